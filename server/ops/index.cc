// Indexing with tensors, masks and lists, PyTorch's (and NumPy's) advanced
// indexing: x[idx], x[mask], x[:, [0, 2]], x[i, ..., idx] and their writes
// (x[mask] = 0, x[idx] += v through index_put_ with accumulate).
//
// One op reads an index expression (see IndexItem in core/views.h) whatever
// it mixes, in three steps:
//   1. Resolve: each advanced item (an integer tensor, a bool mask, a Python
//      bool, a literal array) stands in for full slices over the dims it
//      indexes (a mask covers as many dims as it has); the basic items then
//      make a view of the input (core/views.h), and the advanced ones are
//      recorded against the view's dims. A mask becomes the element offsets
//      (in the view) of its true positions: one index over all its dims.
//   2. Plan: the indices (a mask's offsets count as one) broadcast together
//      to one shape B, and a table of storage offsets with shape B is built
//      from them (bounds are checked here, negative indices wrap). B replaces the indexed dims
//      when those are adjacent; otherwise B leads the result (NumPy's rule).
//   3. Walk: a gather reads the view through the table into a new tensor
//      (`index`); a scatter writes values through it (`index_put_`,
//      `index_put`). See ops/cpu/index_loop.h.
// An expression with basic items only is a view (the View RPC's `index`).
//
// Copies, for memory: the result of a gather is the one new tensor; masks
// add their true positions' offsets (one int64 each) and every expression
// with tensors adds the offset table (one int64 per position of B). Values
// written by index_put_ are cast to the target's dtype first (a copy only
// when the dtypes differ) and cloned when they share the target's storage.
//
// Gradients: the gather's is a scatter-add into zeros (repeated indices
// accumulate, as in PyTorch); the backward keeps the index tensors, never
// the indexed data (kSavesIndexInputs).
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "core/copy.h"
#include "core/create.h"
#include "core/views.h"
#include "ops/cpu/index_loop.h"
#include "ops/op.h"
#include "ops/promotion.h"

namespace tensord {
namespace {

using Grads = std::vector<std::optional<Tensor>>;
using Outputs = std::vector<Tensor>;

bool IsMaskDType(DType dtype) { return dtype == DType::kBool || dtype == DType::kUInt8; }

absl::Status CheckIndexDType(DType dtype) {
  if (dtype == DType::kInt64 || dtype == DType::kInt32 || IsMaskDType(dtype)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tensors used as indices must be long, int, byte or bool tensors, got ", DTypeName(dtype)));
}

// A literal index as a tensor of its own.
absl::StatusOr<Tensor> MaterializeArray(const ArrayIndex& array,
                                        const std::shared_ptr<MemoryBudget>& budget) {
  if (array.dtype != DType::kInt64 && array.dtype != DType::kBool) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a literal index must be int64 or bool, got ", DTypeName(array.dtype)));
  }
  ASSIGN_OR_RETURN(const int64_t numel, CheckedNumel(array.shape, ItemSize(array.dtype)));
  const int64_t nbytes = numel * ItemSize(array.dtype);
  if (nbytes != static_cast<int64_t>(array.data.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a literal index of shape ", DimsToString(array.shape), " and dtype ",
        DTypeName(array.dtype), " needs ", nbytes, " bytes, got ", array.data.size()));
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(array.dtype, array.shape, Device::Cpu(), budget));
  if (nbytes > 0) std::memcpy(t.data(), array.data.data(), static_cast<size_t>(nbytes));
  if (array.dtype == DType::kBool) {  // a bool byte must be 0 or 1
    auto* bytes = reinterpret_cast<unsigned char*>(t.data());
    for (int64_t i = 0; i < numel; ++i) bytes[i] = bytes[i] != 0;
  }
  return t;
}

// nonzero(mask): the coordinates of its nonzero elements, one row each.
absl::StatusOr<Tensor> Nonzero(const Tensor& x, const std::shared_ptr<MemoryBudget>& budget) {
  int64_t count = 0;
  VisitDType(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (x.numel() > 0) {
      count = cpu::CountNonzero<T>(x.shape(), x.strides(), reinterpret_cast<const T*>(x.data()));
    }
  });
  ASSIGN_OR_RETURN(Tensor out,
                   Tensor::Empty(DType::kInt64, Dims{count, x.ndim()}, Device::Cpu(), budget));
  if (count > 0) {
    const Dims row_major = ContiguousStrides(x.shape());
    VisitDType(x.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      cpu::NonzeroCoordinates<T>(x.shape(), x.strides(), row_major,
                                 reinterpret_cast<const T*>(x.data()),
                                 reinterpret_cast<int64_t*>(out.data()));
    });
  }
  return out;
}

// One advanced index of a resolved expression: integer positions along one
// dim of the view, or a mask's true positions over `ndims` dims, given as
// element offsets into the view (so already in bounds).
struct IndexedDims {
  int64_t dim;    // the first dim of the view it indexes
  int64_t ndims;  // 1 for integer positions
  Tensor index;   // int64/int32 positions, or int64 offsets for a mask
  bool offsets;   // whether `index` holds a mask's offsets
};

// An index expression resolved against a tensor: the view its basic items
// make and its advanced indices, in increasing dim order.
struct Resolved {
  Tensor view;
  std::vector<IndexedDims> indices;
  bool advanced = false;  // any advanced item
};

// The element offsets, in `view`, of the true elements of `mask`, which
// covers the view's dims [dim, dim + mask.ndim()), in row-major order.
absl::StatusOr<Tensor> MaskOffsets(const Tensor& mask, const Tensor& view, int64_t dim,
                                   const std::shared_ptr<MemoryBudget>& budget) {
  int64_t count = 0;
  if (mask.numel() > 0) {
    VisitDType(mask.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      count = cpu::CountNonzero<T>(mask.shape(), mask.strides(),
                                   reinterpret_cast<const T*>(mask.data()));
    });
  }
  // One slot more than the count: the loop writes every element's offset
  // and advances past the true ones only (no branch to mispredict on a
  // random mask), so its last write may land one past the end.
  ASSIGN_OR_RETURN(Tensor out,
                   Tensor::Empty(DType::kInt64, Dims{count + 1}, Device::Cpu(), budget));
  const absl::Span<const int64_t> strides(view.strides().data() + dim,
                                          static_cast<size_t>(mask.ndim()));
  if (count == 0) return out.WithLayout(Dims{0}, Dims{1}, out.storage_offset());
  auto* next = reinterpret_cast<int64_t*>(out.data());
  VisitDType(mask.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* m = reinterpret_cast<const T*>(mask.data());
    ForEachRun<2>(mask.shape(), {mask.strides(), strides},
                  [&](const std::array<int64_t, 2>& off, int64_t n,
                      const std::array<int64_t, 2>& s) {
                    for (int64_t i = 0; i < n; ++i) {
                      *next = off[1] + i * s[1];
                      next += cpu::IsNonzero(m[off[0] + i * s[0]]) ? 1 : 0;
                    }
                  });
  });
  return out.WithLayout(Dims{count}, Dims{1}, out.storage_offset());
}

// Resolves `items` against `self`; TensorIndex items take the op's tensor
// arguments from position `first_arg` on, all of which must be used.
absl::StatusOr<Resolved> Resolve(const Tensor& self, absl::Span<const IndexItem> items,
                                 const OpContext& ctx, size_t first_arg) {
  // Pass 1: every advanced item as a tensor (masks keep their dtype), and
  // the number of the input's dims the expression consumes.
  std::vector<std::optional<Tensor>> tensors(items.size());
  size_t next_arg = first_arg;
  int64_t consuming = 0;
  bool advanced = false;
  for (size_t i = 0; i < items.size(); ++i) {
    const IndexItem& item = items[i];
    if (std::holds_alternative<int64_t>(item) || std::holds_alternative<SliceSpec>(item)) {
      ++consuming;
      continue;
    }
    if (!IsAdvanced(item)) continue;
    advanced = true;
    if (std::holds_alternative<TensorIndex>(item)) {
      if (next_arg >= ctx.num_args()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the index has more tensor items than the ", ctx.num_args() - first_arg,
            " tensor arguments given"));
      }
      ASSIGN_OR_RETURN(tensors[i], ctx.TensorArg(next_arg++));
    } else if (const BoolIndex* b = std::get_if<BoolIndex>(&item)) {
      ASSIGN_OR_RETURN(tensors[i], Full(Dims{}, Scalar{b->value},
                                        TensorOptions{DType::kBool, Device::Cpu(), ctx.budget()}));
    } else {
      ASSIGN_OR_RETURN(tensors[i], MaterializeArray(std::get<ArrayIndex>(item), ctx.budget()));
    }
    const Tensor& t = *tensors[i];
    RETURN_IF_ERROR(CheckIndexDType(t.dtype()));
    consuming += IsMaskDType(t.dtype()) ? t.ndim() : 1;
  }
  if (next_arg != ctx.num_args()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "got ", ctx.num_args() - first_arg, " tensor arguments but the index uses ",
        next_arg - first_arg));
  }
  if (consuming > self.ndim()) {
    return absl::InvalidArgumentError(absl::StrCat("too many indices for tensor of dimension ",
                                                   self.ndim(), " (got ", consuming, ")"));
  }

  // Pass 2: the basic expression (advanced items become full slices, a 0-d
  // mask a new axis of size 1), and where each advanced item lands in it.
  struct Pending {
    int64_t dim;
    Tensor index;
  };
  std::vector<Pending> pending;
  std::vector<IndexItem> basic;
  basic.reserve(items.size());
  int64_t out_dim = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const IndexItem& item = items[i];
    if (std::holds_alternative<int64_t>(item)) {
      basic.push_back(item);
    } else if (std::holds_alternative<Ellipsis>(item)) {
      basic.push_back(item);
      out_dim += self.ndim() - consuming;
    } else if (!tensors[i]) {  // a slice or a new axis
      basic.push_back(item);
      ++out_dim;
    } else if (tensors[i]->ndim() == 0 && IsMaskDType(tensors[i]->dtype())) {
      basic.push_back(NewAxis{});
      pending.push_back({out_dim++, tensors[i]->WithLayout(Dims{1}, Dims{1},
                                                           tensors[i]->storage_offset())});
    } else {
      const int64_t covered = IsMaskDType(tensors[i]->dtype()) ? tensors[i]->ndim() : 1;
      for (int64_t k = 0; k < covered; ++k) basic.push_back(SliceSpec{});
      pending.push_back({out_dim, *tensors[i]});
      out_dim += covered;
    }
  }
  ASSIGN_OR_RETURN(Tensor view, Index(self, basic));

  Resolved resolved{view, {}, advanced};
  for (Pending& p : pending) {
    if (!IsMaskDType(p.index.dtype())) {
      resolved.indices.push_back({p.dim, 1, std::move(p.index), false});
      continue;
    }
    const int64_t m = p.index.ndim();
    const absl::Span<const int64_t> covered(view.shape().data() + p.dim, static_cast<size_t>(m));
    if (!std::equal(covered.begin(), covered.end(), p.index.shape().begin())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the shape of the mask ", DimsToString(p.index.shape()), " does not match the shape ",
          DimsToString(covered), " of the dimensions it indexes (from dimension ", p.dim, ")"));
    }
    ASSIGN_OR_RETURN(Tensor offsets, MaskOffsets(p.index, view, p.dim, ctx.budget()));
    resolved.indices.push_back({p.dim, m, std::move(offsets), true});
  }
  return resolved;
}

// Where the indexing result's positions lie in the resolved view.
struct Plan {
  Dims shape;            // the result
  Dims indexed_strides;  // the view's, per result dim; 0 along the index dims
  Dims table_strides;    // the table's, per result dim; 0 along the view's dims
  Tensor table;          // int64, shape B: element offsets into the view
};

absl::StatusOr<Plan> MakePlan(const Resolved& r, const std::shared_ptr<MemoryBudget>& budget) {
  const Tensor& view = r.view;
  Dims b;  // the broadcast shape of the indices
  for (const IndexedDims& entry : r.indices) {
    absl::StatusOr<Dims> joined = BroadcastShapes(b, entry.index.shape());
    if (!joined.ok()) {
      std::string shapes;
      for (const IndexedDims& other : r.indices) {
        absl::StrAppend(&shapes, shapes.empty() ? "" : ", ", DimsToString(other.index.shape()));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "shape mismatch: indexing tensors could not be broadcast together with shapes ",
          shapes));
    }
    b = *std::move(joined);
  }
  // The first index writes the table, the others add to it; with no index
  // it is the one offset 0.
  ASSIGN_OR_RETURN(Tensor table, Tensor::Empty(DType::kInt64, b, Device::Cpu(), budget));
  auto* offsets = reinterpret_cast<int64_t*>(table.data());
  if (r.indices.empty()) offsets[0] = 0;
  bool first = true;
  for (const IndexedDims& entry : r.indices) {
    const int64_t dim = entry.dim;
    const int64_t size = view.shape()[dim];
    const int64_t stride = view.strides()[dim];
    const Tensor spread = BroadcastTo(entry.index, b);
    absl::Status status;
    VisitDType(entry.index.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, int32_t>) {
        const T* idx = reinterpret_cast<const T*>(spread.data());
        ForEachRun<2>(b, {table.strides(), spread.strides()},
                      [&](const std::array<int64_t, 2>& off, int64_t n,
                          const std::array<int64_t, 2>& s) {
                        for (int64_t i = 0; i < n && status.ok(); ++i) {
                          const int64_t v = idx[off[1] + i * s[1]];
                          if (entry.offsets) {  // a mask's offsets: in bounds by construction
                            int64_t& slot = offsets[off[0] + i * s[0]];
                            slot = first ? v : slot + v;
                            continue;
                          }
                          if (v < -size || v >= size) {
                            status = absl::InvalidArgumentError(
                                absl::StrCat("index ", v, " is out of bounds for dimension ",
                                             dim, " with size ", size));
                            return;
                          }
                          const int64_t offset = (v < 0 ? v + size : v) * stride;
                          int64_t& slot = offsets[off[0] + i * s[0]];
                          slot = first ? offset : slot + offset;
                        }
                      });
      }
    });
    RETURN_IF_ERROR(status);
    first = false;
  }

  Plan plan{{}, {}, {}, std::move(table)};
  const Dims b_strides = plan.table.strides();
  auto add_view_dim = [&](int64_t d) {
    plan.shape.push_back(view.shape()[d]);
    plan.indexed_strides.push_back(view.strides()[d]);
    plan.table_strides.push_back(0);
  };
  auto add_index_dims = [&] {
    for (size_t k = 0; k < b.size(); ++k) {
      plan.shape.push_back(b[k]);
      plan.indexed_strides.push_back(0);
      plan.table_strides.push_back(b_strides[k]);
    }
  };
  std::vector<bool> indexed(static_cast<size_t>(view.ndim()), false);
  int64_t covered = 0;
  for (const IndexedDims& entry : r.indices) {
    for (int64_t k = 0; k < entry.ndims; ++k) indexed[static_cast<size_t>(entry.dim + k)] = true;
    covered += entry.ndims;
  }
  if (r.indices.empty()) {
    for (int64_t d = 0; d < view.ndim(); ++d) add_view_dim(d);
  } else {
    const int64_t first = r.indices.front().dim;
    const int64_t end = r.indices.back().dim + r.indices.back().ndims;
    const bool adjacent = end - first == covered;
    if (!adjacent) add_index_dims();
    for (int64_t d = 0; d < view.ndim(); ++d) {
      if (!indexed[static_cast<size_t>(d)]) {
        add_view_dim(d);
      } else if (adjacent && d == first) {
        add_index_dims();
      }
    }
  }
  if (static_cast<int64_t>(plan.shape.size()) > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("the result would have more than ", kMaxDims, " dimensions"));
  }
  RETURN_IF_ERROR(CheckedNumel(plan.shape, view.itemsize()).status());
  return plan;
}

cpu::IndexWalk Walk(const Plan& plan, absl::Span<const int64_t> dense_strides) {
  return cpu::IndexWalk{plan.shape, dense_strides, plan.indexed_strides, plan.table_strides};
}

absl::StatusOr<Tensor> GatherCopy(const Resolved& r, const std::shared_ptr<MemoryBudget>& budget) {
  ASSIGN_OR_RETURN(const Plan plan, MakePlan(r, budget));
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(r.view.dtype(), plan.shape, Device::Cpu(), budget));
  if (out.numel() == 0) return out;
  cpu::VisitWord(out.itemsize(), [&](auto tag) {
    using W = typename decltype(tag)::type;
    cpu::Gather<W>(Walk(plan, out.strides()), reinterpret_cast<W*>(out.data()),
                   reinterpret_cast<const W*>(r.view.data()),
                   reinterpret_cast<const int64_t*>(plan.table.data()));
  });
  return out;
}

// The values to write, as a tensor of the target's dtype whose shape
// broadcasts to the indexing result (PyTorch drops leading size-1 dims of
// a value with more dims than the result).
absl::StatusOr<Tensor> PrepareValues(const Operand& value, const Tensor& target,
                                     const Dims& result_shape,
                                     const std::shared_ptr<MemoryBudget>& budget) {
  if (const Scalar* number = std::get_if<Scalar>(&value)) {
    RETURN_IF_ERROR(CheckConvertible(*number, target.dtype()));
    return Full(Dims{}, *number, TensorOptions{target.dtype(), Device::Cpu(), budget});
  }
  Tensor v = std::get<Tensor>(value);
  Dims shape = v.shape(), strides = v.strides();
  while (shape.size() > result_shape.size() && shape.front() == 1) {
    shape.erase(shape.begin());
    strides.erase(strides.begin());
  }
  bool fits = shape.size() <= result_shape.size();
  for (size_t i = 0; fits && i < shape.size(); ++i) {
    const int64_t size = shape[shape.size() - 1 - i];
    fits = size == 1 || size == result_shape[result_shape.size() - 1 - i];
  }
  if (!fits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape mismatch: value tensor of shape ", DimsToString(v.shape()),
        " cannot be broadcast to indexing result of shape ", DimsToString(result_shape)));
  }
  v = v.WithLayout(std::move(shape), std::move(strides), v.storage_offset());
  // Copies: a cast when the dtypes differ; a clone when the values share the
  // target's storage (x[idx] = x[other] must read before it writes).
  if (v.dtype() != target.dtype()) {
    ASSIGN_OR_RETURN(v, Cast(v, target.dtype()));
  } else if (v.storage() == target.storage()) {
    ASSIGN_OR_RETURN(v, Clone(v));
  }
  return v;
}

// Writes `values` into the resolved view of `target` through the plan.
absl::Status ScatterInto(const Resolved& r, const Operand& value, bool accumulate,
                         const std::shared_ptr<MemoryBudget>& budget) {
  ASSIGN_OR_RETURN(const Plan plan, MakePlan(r, budget));
  ASSIGN_OR_RETURN(const Tensor values, PrepareValues(value, r.view, plan.shape, budget));
  const Tensor spread = BroadcastTo(values, plan.shape);
  if (spread.numel() == 0) return absl::OkStatus();
  const auto* table = reinterpret_cast<const int64_t*>(plan.table.data());
  const cpu::IndexWalk walk = Walk(plan, spread.strides());
  if (!accumulate) {
    cpu::VisitWord(values.itemsize(), [&](auto tag) {
      using W = typename decltype(tag)::type;
      cpu::Scatter<W, false>(walk, reinterpret_cast<W*>(r.view.data()),
                             reinterpret_cast<const W*>(spread.data()), table);
    });
  } else {
    VisitDType(values.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      cpu::Scatter<T, true>(walk, reinterpret_cast<T*>(r.view.data()),
                            reinterpret_cast<const T*>(spread.data()), table);
    });
  }
  return absl::OkStatus();
}

// ---- index(self, tensors...; items) ---------------------------------------------

absl::StatusOr<Outputs> IndexOp(const OpContext& ctx) {
  if (ctx.num_args() < 1) return absl::InvalidArgumentError("takes the tensor to index");
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const std::vector<IndexItem> items, ctx.IndexItems("items"));
  ASSIGN_OR_RETURN(const Resolved r, Resolve(self, items, ctx, 1));
  if (!r.advanced) return Outputs{r.view};
  ASSIGN_OR_RETURN(Tensor out, GatherCopy(r, ctx.budget()));
  return Outputs{std::move(out)};
}

// Basic items: the gradient lands in the same view of zeros. Advanced ones:
// it is scatter-added through the same indices, so repeats accumulate.
absl::StatusOr<Grads> IndexBackward(const GradContext& ctx) {
  const Tensor& g = ctx.grad();
  ASSIGN_OR_RETURN(Tensor zeros, Full(ctx.info(0).shape, Scalar{int64_t{0}},
                                      TensorOptions{g.dtype(), g.device(), ctx.budget()}));
  ASSIGN_OR_RETURN(const std::vector<IndexItem> items, ctx.forward().IndexItems("items"));
  ASSIGN_OR_RETURN(const Resolved r, Resolve(zeros, items, ctx.forward(), 1));
  if (r.advanced) {
    RETURN_IF_ERROR(ScatterInto(r, g, /*accumulate=*/true, ctx.budget()));
  } else {
    RETURN_IF_ERROR(CopyInto(g, r.view));  // a basic view never repeats an element
  }
  Grads grads(ctx.num_inputs());
  grads[0] = std::move(zeros);
  return grads;
}

// ---- index_put_(self, values, tensors...; items, accumulate) ----------------------

absl::StatusOr<Outputs> IndexPutInPlaceOp(const OpContext& ctx) {
  if (ctx.num_args() < 2) return absl::InvalidArgumentError("takes a tensor and the values");
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const std::vector<IndexItem> items, ctx.IndexItems("items"));
  ASSIGN_OR_RETURN(const bool accumulate, ctx.Bool("accumulate", false));
  RETURN_IF_ERROR(PrepareWrite(self));
  ASSIGN_OR_RETURN(const Resolved r, Resolve(self, items, ctx, 2));
  RETURN_IF_ERROR(ScatterInto(r, ctx.arg(1), accumulate, ctx.budget()));
  return Outputs{};
}

// ---- index_put(self, values, tensors...; items, accumulate): a new tensor ---------

absl::StatusOr<Outputs> IndexPutOp(const OpContext& ctx) {
  if (ctx.num_args() < 2) return absl::InvalidArgumentError("takes a tensor and the values");
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const std::vector<IndexItem> items, ctx.IndexItems("items"));
  ASSIGN_OR_RETURN(const bool accumulate, ctx.Bool("accumulate", false));
  ASSIGN_OR_RETURN(Tensor out, Clone(self));
  ASSIGN_OR_RETURN(const Resolved r, Resolve(out, items, ctx, 2));
  RETURN_IF_ERROR(ScatterInto(r, ctx.arg(1), accumulate, ctx.budget()));
  return Outputs{std::move(out)};
}

// self's gradient passes where the values did not replace it; the values'
// is the gradient gathered at the written positions (the engine sums it
// over the dims the values were broadcast along).
absl::StatusOr<Grads> IndexPutBackward(const GradContext& ctx) {
  const Tensor& g = ctx.grad();
  ASSIGN_OR_RETURN(const std::vector<IndexItem> items, ctx.forward().IndexItems("items"));
  ASSIGN_OR_RETURN(const bool accumulate, ctx.forward().Bool("accumulate", false));
  Grads grads(ctx.num_inputs());
  if (ctx.needs_grad(0)) {
    if (accumulate) {
      grads[0] = g;
    } else {
      ASSIGN_OR_RETURN(Tensor kept, Clone(g));
      ASSIGN_OR_RETURN(const Resolved r, Resolve(kept, items, ctx.forward(), 2));
      RETURN_IF_ERROR(ScatterInto(r, Scalar{int64_t{0}}, false, ctx.budget()));
      grads[0] = std::move(kept);
    }
  }
  if (ctx.needs_grad(1) && ctx.info(1).is_tensor) {
    ASSIGN_OR_RETURN(const Resolved r, Resolve(g, items, ctx.forward(), 2));
    ASSIGN_OR_RETURN(Tensor picked, r.advanced ? GatherCopy(r, ctx.budget()) : Clone(r.view));
    // The value may have had leading size-1 dims the result has not.
    const Dims& value_shape = ctx.info(1).shape;
    if (value_shape.size() > picked.shape().size()) {
      Dims shape(value_shape.size() - picked.shape().size(), 1);
      shape.insert(shape.end(), picked.shape().begin(), picked.shape().end());
      picked = picked.WithLayout(shape, ContiguousStrides(shape), picked.storage_offset());
    }
    grads[1] = std::move(picked);
  }
  return grads;
}

// ---- nonzero(self) ----------------------------------------------------------------

absl::StatusOr<Outputs> NonzeroOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(Tensor out, Nonzero(self, ctx.budget()));
  return Outputs{std::move(out)};
}

}  // namespace

void AddIndexOps(OpTable& table) {
  table.insert({
      {"index", {IndexOp, IndexBackward, kSavesIndexInputs}},
      {"index_put_", {IndexPutInPlaceOp, kInPlace}},
      {"index_put", {IndexPutOp, IndexPutBackward, kSavesIndexInputs}},
      {"nonzero", NonzeroOp},
  });
}

}  // namespace tensord
