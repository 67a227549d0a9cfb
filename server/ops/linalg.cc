// Linear algebra, joins and in-place updates: matmul (and its strict forms
// mm and bmm), cat and stack, and the add_, mul_, zero_, fill_ and copy_ that
// optimizers use. Each op validates and promotes here, once, before any
// element is computed; ops/cpu/matmul.cc and the elementwise loops compute.
//
// In-place ops write into their first argument's storage, which other
// tensors (its views, the base it is a view of) may share, and return no
// outputs. Like PyTorch they refuse a computed dtype of a higher kind than
// self's (float into int64) and a self that is an expanded view (several
// elements at one address). Unlike PyTorch, which refuses an operand that
// partially overlaps self, they read such an operand from a copy, so
// `t[1:].add_(t[:-1])` sees the old values, as NumPy's in-place ops do.
// Two requests that write one storage at the same time are not
// synchronised with each other.
#include <array>
#include <cmath>
#include <complex>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "core/copy.h"
#include "core/create.h"
#include "core/views.h"
#include "ops/cpu/elementwise_loop.h"
#include "ops/cpu/matmul.h"
#include "ops/functors.h"
#include "ops/op.h"
#include "ops/promotion.h"

namespace tensord {
namespace {

// ---- matmul ---------------------------------------------------------------------

// torch.matmul: 1-D operands gain a dim (a in front, b behind) that the
// result drops again; dims before the last two are batch dims and broadcast.
absl::StatusOr<Tensor> Matmul(const Tensor& a, const Tensor& b, const OpContext& ctx) {
  if (a.ndim() == 0 || b.ndim() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "both arguments need at least one dimension, got shapes ", DimsToString(a.shape()),
        " and ", DimsToString(b.shape())));
  }
  if (a.dtype() != b.dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected both operands to have the same dtype, got ", DTypeName(a.dtype()),
                     " and ", DTypeName(b.dtype())));
  }
  if (a.dtype() == DType::kBool) {
    return absl::InvalidArgumentError("not supported for bool tensors");
  }
  ASSIGN_OR_RETURN(const Tensor a2, a.ndim() == 1 ? Unsqueeze(a, 0) : a);
  ASSIGN_OR_RETURN(const Tensor b2, b.ndim() == 1 ? Unsqueeze(b, 1) : b);
  const int64_t m = a2.shape()[a2.ndim() - 2];
  const int64_t k = a2.shape()[a2.ndim() - 1];
  const int64_t n = b2.shape()[b2.ndim() - 1];
  if (b2.shape()[b2.ndim() - 2] != k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shapes ", DimsToString(a.shape()), " and ", DimsToString(b.shape()),
        " cannot be multiplied (", k, " != ", b2.shape()[b2.ndim() - 2], ")"));
  }
  const absl::Span<const int64_t> a_batch =
      absl::MakeConstSpan(a2.shape()).first(static_cast<size_t>(a2.ndim() - 2));
  const absl::Span<const int64_t> b_batch =
      absl::MakeConstSpan(b2.shape()).first(static_cast<size_t>(b2.ndim() - 2));
  absl::StatusOr<Dims> batch = BroadcastShapes(a_batch, b_batch);
  if (!batch.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shapes ", DimsToString(a.shape()), " and ", DimsToString(b.shape()),
        " cannot be multiplied: batch dimensions ", DimsToString(a_batch), " and ",
        DimsToString(b_batch), " do not broadcast"));
  }
  Dims shape = *batch, a_shape = *batch, b_shape = *batch;
  shape.insert(shape.end(), {m, n});
  a_shape.insert(a_shape.end(), {m, k});
  b_shape.insert(b_shape.end(), {k, n});
  ASSIGN_OR_RETURN(const Tensor out, Tensor::Empty(a.dtype(), shape, Device::Cpu(), ctx.budget()));
  RETURN_IF_ERROR(cpu::Matmul(BroadcastTo(a2, a_shape), BroadcastTo(b2, b_shape), out));
  // Drop the dims the 1-D operands gained; `out` is contiguous, so the
  // result is too.
  Dims result_shape = *batch;
  if (a.ndim() > 1) result_shape.push_back(m);
  if (b.ndim() > 1) result_shape.push_back(n);
  Dims strides = ContiguousStrides(result_shape);
  return out.WithLayout(std::move(result_shape), std::move(strides), out.storage_offset());
}

absl::StatusOr<std::vector<Tensor>> MatmulOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor a, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor b, ctx.TensorArg(1));
  ASSIGN_OR_RETURN(Tensor out, Matmul(a, b, ctx));
  return std::vector<Tensor>{std::move(out)};
}

// mm and bmm: matmul without 1-D operands or broadcasting, as in torch.
template <int64_t kRank>
absl::StatusOr<std::vector<Tensor>> StrictMatmulOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor a, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor b, ctx.TensorArg(1));
  if (a.ndim() != kRank || b.ndim() != kRank) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", kRank, "-D tensors, got shapes ",
                                                   DimsToString(a.shape()), " and ",
                                                   DimsToString(b.shape())));
  }
  if (kRank == 3 && a.shape()[0] != b.shape()[0]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch sizes differ: shapes ", DimsToString(a.shape()), " and ", DimsToString(b.shape())));
  }
  ASSIGN_OR_RETURN(Tensor out, Matmul(a, b, ctx));
  return std::vector<Tensor>{std::move(out)};
}

using Grads = std::vector<std::optional<Tensor>>;

// d(a @ b) = g @ b^T, a^T @ g, batch dims included (the engine sums the
// broadcast ones away). A 1-D operand gets back the dim matmul gave it,
// and g the dims the result dropped.
absl::StatusOr<Grads> MatmulBackward(const GradContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  ASSIGN_OR_RETURN(const Tensor a2, a.ndim() == 1 ? Unsqueeze(a, 0) : a);
  ASSIGN_OR_RETURN(const Tensor b2, b.ndim() == 1 ? Unsqueeze(b, 1) : b);
  const Dims a_batch(a2.shape().begin(), a2.shape().end() - 2);
  const Dims b_batch(b2.shape().begin(), b2.shape().end() - 2);
  ASSIGN_OR_RETURN(Dims full, BroadcastShapes(a_batch, b_batch));
  full.push_back(a2.shape()[a2.ndim() - 2]);
  full.push_back(b2.shape()[b2.ndim() - 1]);
  ASSIGN_OR_RETURN(const Tensor g, Reshape(ctx.grad(), full));
  Grads r(2);
  if (ctx.needs_grad(0)) {
    ASSIGN_OR_RETURN(const Tensor bt, Transpose(b2, -1, -2));
    ASSIGN_OR_RETURN(r[0], ctx.Call("matmul", {g, bt}));  // [..., 1, k] for a 1-D a
  }
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(const Tensor at, Transpose(a2, -1, -2));
    ASSIGN_OR_RETURN(Tensor gb, ctx.Call("matmul", {at, g}));
    if (b.ndim() == 1) {
      ASSIGN_OR_RETURN(gb, Squeeze(gb, Dims{gb.ndim() - 1}));
    }
    r[1] = std::move(gb);
  }
  return r;
}

// ---- cat and stack --------------------------------------------------------------

// Every positional argument as a tensor (at least one).
absl::StatusOr<std::vector<Tensor>> AllTensors(const OpContext& ctx) {
  if (ctx.num_args() == 0) {
    return absl::InvalidArgumentError("expected a non-empty list of tensors");
  }
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < ctx.num_args(); ++i) {
    ASSIGN_OR_RETURN(Tensor t, ctx.TensorArg(i));
    tensors.push_back(std::move(t));
  }
  return tensors;
}

DType PromotedDType(const std::vector<Tensor>& tensors) {
  const std::vector<Operand> operands(tensors.begin(), tensors.end());
  return ResultType(operands);
}

absl::StatusOr<int64_t> DimAttr(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> dim, ctx.Int("dim"));
  return dim.value_or(0);
}

absl::StatusOr<std::vector<Tensor>> CatOp(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::vector<Tensor> tensors, AllTensors(ctx));
  ASSIGN_OR_RETURN(const int64_t dim, DimAttr(ctx));
  const DType dtype = PromotedDType(tensors);
  // PyTorch's legacy rule: a 1-D tensor of size 0 is skipped whatever the
  // rank of the others (it still takes part in type promotion).
  std::vector<size_t> joined;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (t.ndim() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "zero-dimensional tensor (at position ", i, ") cannot be concatenated"));
    }
    if (!(t.ndim() == 1 && t.shape()[0] == 0)) joined.push_back(i);
  }
  if (joined.empty()) {
    RETURN_IF_ERROR(WrapDim(dim, 1).status());
    ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(dtype, Dims{0}, Device::Cpu(), ctx.budget()));
    return std::vector<Tensor>{std::move(out)};
  }
  const size_t first = joined[0];
  const Tensor& ref = tensors[first];
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, ref.ndim()));
  Dims shape = ref.shape();
  shape[d] = 0;
  for (size_t i : joined) {
    const Tensor& t = tensors[i];
    if (t.ndim() != ref.ndim()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensors must have the same number of dimensions: tensor ", first, " has shape ",
          DimsToString(ref.shape()), " but tensor ", i, " has shape ", DimsToString(t.shape())));
    }
    for (int64_t k = 0; k < t.ndim(); ++k) {
      if (k != d && t.shape()[k] != ref.shape()[k]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sizes of tensors must match except in dimension ", d, ": expected size ",
            ref.shape()[k], " but got size ", t.shape()[k], " for tensor ", i, " (shape ",
            DimsToString(t.shape()), "; tensor ", first, " has shape ", DimsToString(ref.shape()),
            ")"));
      }
    }
    if (__builtin_add_overflow(shape[d], t.shape()[d], &shape[d])) {
      return absl::InvalidArgumentError(
          absl::StrCat("the concatenated size along dimension ", d, " overflows int64"));
    }
  }
  ASSIGN_OR_RETURN(const Tensor out, Tensor::Empty(dtype, shape, Device::Cpu(), ctx.budget()));
  int64_t offset = out.storage_offset();
  for (size_t i : joined) {
    const Tensor& t = tensors[i];
    if (t.numel() == 0) continue;
    RETURN_IF_ERROR(CopyInto(t, out.WithLayout(t.shape(), out.strides(), offset)));
    offset += t.shape()[d] * out.strides()[d];
  }
  return std::vector<Tensor>{out};
}

absl::StatusOr<std::vector<Tensor>> StackOp(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::vector<Tensor> tensors, AllTensors(ctx));
  ASSIGN_OR_RETURN(const int64_t dim, DimAttr(ctx));
  const Tensor& ref = tensors[0];
  for (size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].shape() != ref.shape()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expects each tensor to be equal size, but got ", DimsToString(ref.shape()),
          " at entry 0 and ", DimsToString(tensors[i].shape()), " at entry ", i));
    }
  }
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, ref.ndim() + 1));
  Dims shape = ref.shape();
  shape.insert(shape.begin() + d, static_cast<int64_t>(tensors.size()));
  ASSIGN_OR_RETURN(const Tensor out,
                   Tensor::Empty(PromotedDType(tensors), shape, Device::Cpu(), ctx.budget()));
  for (size_t i = 0; i < tensors.size(); ++i) {
    ASSIGN_OR_RETURN(const Tensor slot, Select(out, d, static_cast<int64_t>(i)));
    RETURN_IF_ERROR(CopyInto(tensors[i], slot));
  }
  return std::vector<Tensor>{out};
}

// Each input gets its slice of the gradient along the joined dim.
absl::StatusOr<Grads> CatBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim, DimAttr(ctx.forward()));
  const Tensor& g = ctx.grad();
  Grads r(ctx.num_inputs());
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, g.ndim()));
  int64_t offset = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Dims& shape = ctx.info(i).shape;
    if (shape.size() == 1 && shape[0] == 0 && g.ndim() != 1) continue;  // skipped by cat
    const int64_t size = shape[d];
    if (ctx.needs_grad(i)) {
      ASSIGN_OR_RETURN(r[i], Slice(g, d, SliceSpec{offset, offset + size, 1}));
    }
    offset += size;
  }
  return r;
}

absl::StatusOr<Grads> StackBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim, DimAttr(ctx.forward()));
  const Tensor& g = ctx.grad();
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, g.ndim()));
  Grads r(ctx.num_inputs());
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (ctx.needs_grad(i)) {
      ASSIGN_OR_RETURN(r[i], Select(g, d, static_cast<int64_t>(i)));
    }
  }
  return r;
}

// ---- in-place updates -----------------------------------------------------------

// PyTorch's canCast: no conversion to a lower kind (complex to real,
// floating to integer, anything to bool).
bool CanCast(DType from, DType to) {
  if (IsComplex(from) && !IsComplex(to)) return false;
  if (IsFloatingPoint(from) && IsIntegral(to)) return false;
  if (from != DType::kBool && to == DType::kBool) return false;
  return true;
}

// An in-place op writes each element once, so `self` must not address one
// element from two indices (an expanded view does: stride 0).
// The other operand broadcasts to self's shape; self never grows.
absl::Status CheckBroadcastsTo(const Dims& from, const Dims& to) {
  bool ok = from.size() <= to.size();
  for (size_t i = 0; ok && i < from.size(); ++i) {
    const int64_t size = from[from.size() - 1 - i];
    ok = size == 1 || size == to[to.size() - 1 - i];
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("shape ", DimsToString(from),
                                                 " cannot be broadcast to self's shape ",
                                                 DimsToString(to)));
}

// The dtype `self op other` computes in, when self's dtype can hold it.
absl::StatusOr<DType> InPlaceDType(const Tensor& self, const Operand& other) {
  const std::array<Operand, 2> operands = {self, other};
  const DType result = ResultType(operands);
  if (!CanCast(result, self.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("result type ", DTypeName(result),
                                                   " can't be cast to the desired output type ",
                                                   DTypeName(self.dtype())));
  }
  return result;
}

// PyTorch's alpha_check.
absl::Status CheckAlpha(const Scalar& alpha, DType dtype) {
  if (std::holds_alternative<bool>(alpha.value) && dtype != DType::kBool) {
    return absl::InvalidArgumentError("a bool alpha is only supported for bool tensors");
  }
  if (!IsFloatingPoint(dtype) && !IsComplex(dtype) && !alpha.is_integral()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "for integral tensors, alpha must not be a floating point number, got ",
        ScalarString(alpha)));
  }
  if (!IsComplex(dtype) && alpha.imag != 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "for non-complex tensors, alpha must not be a complex number, got ", ScalarString(alpha)));
  }
  return absl::OkStatus();
}

// `other` as a `dtype` tensor seen with self's shape. It shares memory with
// self only when it is self itself (same elements at the same indices);
// any other overlap is read from a copy.
absl::StatusOr<Tensor> InPlaceOperand(const Operand& other, const Tensor& self, DType dtype,
                                      const OpContext& ctx) {
  if (const Scalar* scalar = std::get_if<Scalar>(&other)) {
    ASSIGN_OR_RETURN(const Tensor t,
                     Full(Dims{}, *scalar, TensorOptions{dtype, Device::Cpu(), ctx.budget()}));
    return BroadcastTo(t, self.shape());
  }
  Tensor t = std::get<Tensor>(other);
  if (t.storage() == self.storage()) {
    const Tensor seen = BroadcastTo(t, self.shape());
    if (seen.storage_offset() != self.storage_offset() || seen.strides() != self.strides()) {
      ASSIGN_OR_RETURN(t, Clone(t));
    }
  }
  ASSIGN_OR_RETURN(t, Cast(t, dtype));
  return BroadcastTo(t, self.shape());
}

// self = f(self, other) computed in `dtype`, stored in self's dtype.
// `make_functor(TypeTag<T>)` gives the functor for storage type T.
template <typename MakeFunctor>
absl::Status ApplyInPlace(const Tensor& self, const Tensor& other, DType dtype,
                          MakeFunctor make_functor) {
  if (self.numel() == 0) return absl::OkStatus();
  auto run = [&](const Tensor& target) {
    VisitDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      // Reads and writes one element at the same address: safe in place.
      cpu::Binary<T>(target, target, other, make_functor(tag));
    });
  };
  if (dtype == self.dtype()) {
    run(self);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const Tensor wide, Cast(self, dtype));  // a copy: dtypes differ
  run(wide);
  return CopyInto(wide, self);
}

// The value of a Python number in compute type C.
template <typename C>
C ScalarAs(const Scalar& s) {
  if constexpr (functors::IsComplexT<C>::value) {
    return C(static_cast<typename C::value_type>(s.ToDouble()),
             static_cast<typename C::value_type>(s.imag));
  } else if constexpr (std::is_same_v<C, bool>) {
    return s.ToDouble() != 0.0;
  } else if constexpr (std::is_integral_v<C>) {
    return static_cast<C>(s.ToInt64());
  } else {
    return static_cast<C>(s.ToDouble());
  }
}

// a + alpha * b (a || (alpha && b) for bool), alpha in the compute type.
template <typename A>
struct ScaledAdd {
  template <typename T>
  using Out = T;
  A alpha;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_same_v<T, bool>) {
      return a || (alpha && b);
    } else {
      return a + alpha * b;
    }
  }
};

// add_(self, other, alpha=1) and mul_(self, other).
template <bool kAdd>
absl::StatusOr<std::vector<Tensor>> ArithmeticInPlaceOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  const Operand& other = ctx.arg(1);
  std::optional<Scalar> alpha;
  if (kAdd) {
    ASSIGN_OR_RETURN(alpha, ctx.ScalarAttr("alpha"));
  }
  ASSIGN_OR_RETURN(const DType dtype, InPlaceDType(self, other));
  if (alpha) RETURN_IF_ERROR(CheckAlpha(*alpha, dtype));
  if (const Tensor* t = std::get_if<Tensor>(&other)) {
    RETURN_IF_ERROR(CheckBroadcastsTo(t->shape(), self.shape()));
  }
  RETURN_IF_ERROR(PrepareWrite(self));
  ASSIGN_OR_RETURN(const Tensor operand, InPlaceOperand(other, self, dtype, ctx));
  const bool plain_add =
      !alpha || (std::holds_alternative<int64_t>(alpha->value) && alpha->ToInt64() == 1 &&
                 alpha->imag == 0.0);
  if (!kAdd) {
    RETURN_IF_ERROR(ApplyInPlace(self, operand, dtype, [](auto) { return functors::Mul{}; }));
  } else if (plain_add) {
    RETURN_IF_ERROR(ApplyInPlace(self, operand, dtype, [](auto) { return functors::Add{}; }));
  } else {
    RETURN_IF_ERROR(ApplyInPlace(self, operand, dtype, [&](auto tag) {
      using C = cpu::ComputeType<typename decltype(tag)::type>;
      return ScaledAdd<C>{ScalarAs<C>(*alpha)};
    }));
  }
  return std::vector<Tensor>{};
}

absl::StatusOr<std::vector<Tensor>> ZeroInPlaceOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  RETURN_IF_ERROR(PrepareWrite(self));
  Fill(self, Scalar{int64_t{0}});
  return std::vector<Tensor>{};
}

// fill_(self, value): a number, or a 0-d tensor whose value is converted.
absl::StatusOr<std::vector<Tensor>> FillInPlaceOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  if (const Scalar* value = std::get_if<Scalar>(&ctx.arg(1))) {
    RETURN_IF_ERROR(CheckConvertible(*value, self.dtype()));
    RETURN_IF_ERROR(PrepareWrite(self));
    Fill(self, *value);
    return std::vector<Tensor>{};
  }
  const Tensor& value = std::get<Tensor>(ctx.arg(1));
  if (value.ndim() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the value must be a number or a 0-dimensional tensor, got shape ",
        DimsToString(value.shape())));
  }
  RETURN_IF_ERROR(PrepareWrite(self));
  // One element, copied first: it may be an element of self.
  ASSIGN_OR_RETURN(const Tensor single, Clone(value));
  RETURN_IF_ERROR(CopyInto(BroadcastTo(single, self.shape()), self));
  return std::vector<Tensor>{};
}

// copy_(self, src): src broadcast to self's shape and converted to its dtype
// (any dtype, as in PyTorch: complex to real drops the imaginary part).
absl::StatusOr<std::vector<Tensor>> CopyInPlaceOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor self, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(Tensor src, ctx.TensorArg(1));
  RETURN_IF_ERROR(CheckBroadcastsTo(src.shape(), self.shape()));
  RETURN_IF_ERROR(PrepareWrite(self));
  if (src.storage() == self.storage()) {  // CopyInto needs disjoint memory
    ASSIGN_OR_RETURN(src, Clone(src));
  }
  RETURN_IF_ERROR(CopyInto(BroadcastTo(src, self.shape()), self));
  return std::vector<Tensor>{};
}

}  // namespace

void AddLinalgOps(OpTable& table) {
  table.insert({
      {"matmul", {MatmulOp, MatmulBackward, kSavesInputs}},
      {"mm", {StrictMatmulOp<2>, MatmulBackward, kSavesInputs}},
      {"bmm", {StrictMatmulOp<3>, MatmulBackward, kSavesInputs}},
      {"cat", {CatOp, CatBackward}},
      {"stack", {StackOp, StackBackward}},
      {"add_", {ArithmeticInPlaceOp<true>, kInPlace}},
      {"mul_", {ArithmeticInPlaceOp<false>, kInPlace}},
      {"zero_", {ZeroInPlaceOp, kInPlace}},
      {"fill_", {FillInPlaceOp, kInPlace}},
      {"copy_", {CopyInPlaceOp, kInPlace}},
  });
}

}  // namespace tensord
