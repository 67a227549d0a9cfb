// Reductions: sum, prod, mean, var, std, max, min, argmax, argmin, and the
// softmax family, with PyTorch's semantics. Each op validates its dims
// (`dim`: one int or a list, negative allowed, absent or empty = every dim;
// `keepdim`) and its dtype here, once, and allocates the outputs; the loops
// in ops/cpu/reduction_loop.h only compute. The backward of each
// differentiable reduction sits above the table at the end.
#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "core/create.h"
#include "core/views.h"
#include "ops/cpu/reduction_loop.h"
#include "ops/functors.h"
#include "ops/op.h"
#include "ops/promotion.h"

namespace tensord {
namespace {

using cpu::FoldKind;

// One flag per dim of an `ndim`-dim tensor: the dims named by the `dim`
// attribute, or every dim when it is absent or empty. A 0-d tensor accepts
// dim 0 and -1 (and has no flag to set), as in torch.
absl::StatusOr<std::vector<bool>> ReducedDims(const OpContext& ctx, int64_t ndim) {
  ASSIGN_OR_RETURN(std::optional<Dims> dims, ctx.Dims_("dim"));
  std::vector<bool> reduced(ndim, !dims || dims->empty());
  if (!dims) return reduced;
  std::vector<bool> seen(std::max<int64_t>(ndim, 1), false);
  for (int64_t dim : *dims) {
    ASSIGN_OR_RETURN(int64_t d, WrapDim(dim, ndim));
    if (seen[d]) {
      return absl::InvalidArgumentError(
          absl::StrCat("dim ", d, " appears multiple times in the list of dims"));
    }
    seen[d] = true;
    if (ndim > 0) reduced[d] = true;
  }
  return reduced;
}

// The `dim` attribute of ops that take a single dim (max/min with indices,
// argmax/argmin, softmax), wrapped; nullopt when absent. -1 for a 0-d tensor.
absl::StatusOr<std::optional<int64_t>> SingleDim(const OpContext& ctx, int64_t ndim) {
  ASSIGN_OR_RETURN(std::optional<Dims> dims, ctx.Dims_("dim"));
  if (!dims) return std::nullopt;
  if (dims->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("dim must be a single int, not the list ", DimsToString(*dims)));
  }
  ASSIGN_OR_RETURN(int64_t d, WrapDim((*dims)[0], ndim));
  return ndim == 0 ? int64_t{-1} : d;
}

std::vector<bool> OnlyDim(int64_t ndim, int64_t dim) {
  std::vector<bool> reduced(ndim, false);
  if (dim >= 0) reduced[dim] = true;
  return reduced;
}

// The shape of a reduction's result: reduced dims dropped, or kept as 1.
Dims ReducedShape(const Dims& shape, const std::vector<bool>& reduced, bool keepdim) {
  Dims out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!reduced[d]) {
      out.push_back(shape[d]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

DType RealDType(DType dtype) {
  if (dtype == DType::kComplex64) return DType::kFloat32;
  if (dtype == DType::kComplex128) return DType::kFloat64;
  return dtype;
}

absl::Status RejectComplex(DType dtype) {
  if (IsComplex(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not supported for complex dtype ", DTypeName(dtype)));
  }
  return absl::OkStatus();
}

// ---- sum, prod, mean -------------------------------------------------------------

// Sums and products of bool and integer tensors are int64, as in torch; mean
// needs a floating or complex tensor (torch cannot infer an integer mean's dtype).
template <FoldKind kKind>
absl::StatusOr<std::vector<Tensor>> FoldOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::vector<bool> reduced, ReducedDims(ctx, x.ndim()));
  ASSIGN_OR_RETURN(bool keepdim, ctx.Bool("keepdim", false));
  const bool exact = x.dtype() == DType::kBool || IsIntegral(x.dtype());
  if (kKind == FoldKind::kMean && exact) {
    return absl::InvalidArgumentError(absl::StrCat(
        "could not infer output dtype. Input dtype must be either a floating point or complex "
        "dtype. Got: ",
        DTypeName(x.dtype())));
  }
  const DType out_dtype = exact ? DType::kInt64 : x.dtype();
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(out_dtype, ReducedShape(x.shape(), reduced, keepdim),
                                             Device::Cpu(), ctx.budget()));
  const cpu::ReductionPlan plan = cpu::MakeReductionPlan(x, reduced, /*logical_order=*/false);
  VisitDType(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (kKind != FoldKind::kMean || !std::is_integral_v<T>) {
      cpu::Fold<T, kKind>(plan, x, out);
    }
  });
  return std::vector<Tensor>{out};
}

// ---- var, std ---------------------------------------------------------------------

// `correction` (default 1, Bessel's) is subtracted from the element count;
// complex tensors give their real dtype.
template <bool kStd>
absl::StatusOr<std::vector<Tensor>> VarianceOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::vector<bool> reduced, ReducedDims(ctx, x.ndim()));
  ASSIGN_OR_RETURN(bool keepdim, ctx.Bool("keepdim", false));
  ASSIGN_OR_RETURN(std::optional<double> correction, ctx.Double("correction"));
  if (!IsFloatingPoint(x.dtype()) && !IsComplex(x.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("std and var only support floating point and complex dtypes, not ",
                     DTypeName(x.dtype())));
  }
  ASSIGN_OR_RETURN(Tensor out,
                   Tensor::Empty(RealDType(x.dtype()), ReducedShape(x.shape(), reduced, keepdim),
                                 Device::Cpu(), ctx.budget()));
  const cpu::ReductionPlan plan = cpu::MakeReductionPlan(x, reduced, /*logical_order=*/false);
  VisitDType(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_integral_v<T>) {
      cpu::Variance<T>(plan, x, out, correction.value_or(1.0), kStd);
    }
  });
  return std::vector<Tensor>{out};
}

// ---- max, min, argmax, argmin ---------------------------------------------------

absl::Status CheckReducible(const Tensor& x, std::optional<int64_t> dim) {
  if (!dim && x.numel() == 0) {
    return absl::InvalidArgumentError(
        "expected reduction dim to be specified for input.numel() == 0; specify the reduction "
        "dim with the 'dim' argument");
  }
  if (dim && *dim >= 0 && x.shape()[*dim] == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected reduction dim ", *dim, " to have non-zero size"));
  }
  return absl::OkStatus();
}

void RunArgReduce(bool is_max, const cpu::ReductionPlan& plan, const Tensor& x,
                  const Tensor* values, const Tensor* indices) {
  VisitDType(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!functors::IsComplexT<T>::value) {
      if (is_max) {
        cpu::ArgReduce<T, true>(plan, x, values, indices);
      } else {
        cpu::ArgReduce<T, false>(plan, x, values, indices);
      }
    }
  });
}

// max(x): the largest element as a 0-d tensor. max(x, dim, keepdim): the
// values and their int64 indices along `dim`. NaN is larger than any number;
// ties give the first index.
template <bool kMax>
absl::StatusOr<std::vector<Tensor>> MaxMinOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::optional<int64_t> dim, SingleDim(ctx, x.ndim()));
  ASSIGN_OR_RETURN(bool keepdim, ctx.Bool("keepdim", false));
  RETURN_IF_ERROR(RejectComplex(x.dtype()));
  RETURN_IF_ERROR(CheckReducible(x, dim));
  if (!dim) {
    const std::vector<bool> all(x.ndim(), true);
    ASSIGN_OR_RETURN(Tensor values, Tensor::Empty(x.dtype(), Dims{}, Device::Cpu(), ctx.budget()));
    RunArgReduce(kMax, cpu::MakeReductionPlan(x, all, /*logical_order=*/true), x, &values,
                 nullptr);
    return std::vector<Tensor>{values};
  }
  const std::vector<bool> reduced = OnlyDim(x.ndim(), *dim);
  const Dims shape = ReducedShape(x.shape(), reduced, keepdim);
  ASSIGN_OR_RETURN(Tensor values, Tensor::Empty(x.dtype(), shape, Device::Cpu(), ctx.budget()));
  ASSIGN_OR_RETURN(Tensor indices, Tensor::Empty(DType::kInt64, shape, Device::Cpu(), ctx.budget()));
  RunArgReduce(kMax, cpu::MakeReductionPlan(x, reduced, /*logical_order=*/true), x, &values,
               &indices);
  return std::vector<Tensor>{values, indices};
}

// argmax(x, dim=None, keepdim): int64 indices along `dim`, or into the
// flattened tensor when `dim` is absent (then keepdim gives all-1 dims).
// Like torch, not defined for bool tensors.
template <bool kMax>
absl::StatusOr<std::vector<Tensor>> ArgMaxMinOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::optional<int64_t> dim, SingleDim(ctx, x.ndim()));
  ASSIGN_OR_RETURN(bool keepdim, ctx.Bool("keepdim", false));
  RETURN_IF_ERROR(RejectComplex(x.dtype()));
  if (x.dtype() == DType::kBool) return absl::InvalidArgumentError("not supported for bool tensors");
  RETURN_IF_ERROR(CheckReducible(x, dim));
  const std::vector<bool> reduced =
      dim ? OnlyDim(x.ndim(), *dim) : std::vector<bool>(x.ndim(), true);
  ASSIGN_OR_RETURN(Tensor indices,
                   Tensor::Empty(DType::kInt64, ReducedShape(x.shape(), reduced, keepdim),
                                 Device::Cpu(), ctx.budget()));
  RunArgReduce(kMax, cpu::MakeReductionPlan(x, reduced, /*logical_order=*/true), x, nullptr,
               &indices);
  return std::vector<Tensor>{indices};
}

// ---- softmax, log_softmax ----------------------------------------------------------

template <bool kLog>
absl::StatusOr<std::vector<Tensor>> SoftmaxOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::optional<int64_t> dim, SingleDim(ctx, x.ndim()));
  if (!dim) return absl::InvalidArgumentError("missing the required attribute 'dim'");
  if (!IsFloatingPoint(x.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "needs a floating point tensor, not ", DTypeName(x.dtype()),
        " (cast it first, e.g. with .float())"));
  }
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(x.dtype(), x.shape(), Device::Cpu(), ctx.budget()));
  VisitDType(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_integral_v<T> && !functors::IsComplexT<T>::value) {
      cpu::Softmax<T, kLog>(x, out, *dim);
    }
  });
  return std::vector<Tensor>{out};
}

// ---- backward ---------------------------------------------------------------------

using Grads = std::vector<std::optional<Tensor>>;

// `t`, shaped like the output of a reduction over `reduced`, broadcast back
// to the input's shape (a view with stride 0 along the reduced dims).
absl::StatusOr<Tensor> ExpandBack(const GradContext& ctx, const Tensor& t,
                                  const std::vector<bool>& reduced) {
  ASSIGN_OR_RETURN(const bool keepdim, ctx.forward().Bool("keepdim", false));
  const Dims& shape = ctx.info(0).shape;
  Tensor kept = t;
  if (!keepdim) {
    ASSIGN_OR_RETURN(kept, Reshape(t, ReducedShape(shape, reduced, true)));
  }
  return BroadcastTo(kept, shape);
}

int64_t ReducedCount(const Dims& shape, const std::vector<bool>& reduced) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (reduced[d]) n *= shape[d];
  }
  return n;
}

// The forward's attributes with keepdim set: for recomputing a reduction
// whose result broadcasts against the input.
std::map<std::string, Attr> KeepDim(const GradContext& ctx) {
  std::map<std::string, Attr> attrs = ctx.forward().attrs();
  attrs["keepdim"] = true;
  return attrs;
}

absl::StatusOr<Grads> SumBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const std::vector<bool> reduced,
                   ReducedDims(ctx.forward(), ctx.info(0).shape.size()));
  ASSIGN_OR_RETURN(Tensor g, ExpandBack(ctx, ctx.grad(), reduced));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> MeanBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const std::vector<bool> reduced,
                   ReducedDims(ctx.forward(), ctx.info(0).shape.size()));
  ASSIGN_OR_RETURN(const Tensor g, ExpandBack(ctx, ctx.grad(), reduced));
  ASSIGN_OR_RETURN(Tensor r,
                   ctx.Call("div", {g, Scalar{ReducedCount(ctx.info(0).shape, reduced)}}));
  return Grads{std::move(r)};
}

// d prod = g * prod / x where x != 0. At a zero the product of the other
// elements is needed instead: the product of the slice with that zero taken
// out when it is the slice's only zero, else 0.
absl::StatusOr<Grads> ProdBackward(const GradContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Scalar zero{int64_t{0}};
  ASSIGN_OR_RETURN(const std::vector<bool> reduced, ReducedDims(ctx.forward(), x.ndim()));
  ASSIGN_OR_RETURN(const Tensor g, ExpandBack(ctx, ctx.grad(), reduced));
  ASSIGN_OR_RETURN(const Tensor out, ExpandBack(ctx, ctx.output(), reduced));
  ASSIGN_OR_RETURN(const Tensor g_out, ctx.Call("mul", {g, out}));
  ASSIGN_OR_RETURN(const Tensor at_nonzero, ctx.Call("div", {g_out, x}));
  ASSIGN_OR_RETURN(const Tensor is_zero, ctx.Call("eq", {x, zero}));
  ASSIGN_OR_RETURN(const Tensor zeros_as_one, ctx.Call("where", {is_zero, Scalar{int64_t{1}}, x}));
  ASSIGN_OR_RETURN(const Tensor others, ctx.Call("prod", {zeros_as_one}, KeepDim(ctx)));
  ASSIGN_OR_RETURN(const Tensor zero_count, ctx.Call("sum", {is_zero}, KeepDim(ctx)));
  ASSIGN_OR_RETURN(const Tensor single_zero, ctx.Call("eq", {zero_count, Scalar{int64_t{1}}}));
  ASSIGN_OR_RETURN(const Tensor others_if_single, ctx.Call("where", {single_zero, others, zero}));
  ASSIGN_OR_RETURN(const Tensor at_zero, ctx.Call("mul", {g, others_if_single}));
  ASSIGN_OR_RETURN(Tensor r, ctx.Call("where", {is_zero, at_zero, at_nonzero}));
  return Grads{std::move(r)};
}

// d var = g * 2 (x - mean) / (N - correction);
// d std = g * (x - mean) / ((N - correction) * std), 0 where std is 0.
template <bool kStd>
absl::StatusOr<Grads> VarianceBackward(const GradContext& ctx) {
  const Tensor& x = ctx.input(0);
  ASSIGN_OR_RETURN(const std::vector<bool> reduced, ReducedDims(ctx.forward(), x.ndim()));
  ASSIGN_OR_RETURN(const std::optional<double> correction, ctx.forward().Double("correction"));
  std::map<std::string, Attr> mean_attrs = KeepDim(ctx);
  mean_attrs.erase("correction");
  ASSIGN_OR_RETURN(const Tensor mean, ctx.Call("mean", {x}, mean_attrs));
  ASSIGN_OR_RETURN(const Tensor centered, ctx.Call("sub", {x, mean}));
  ASSIGN_OR_RETURN(const Tensor g, ExpandBack(ctx, ctx.grad(), reduced));
  ASSIGN_OR_RETURN(const Tensor g_centered, ctx.Call("mul", {g, centered}));
  const double dof = std::max(
      0.0, static_cast<double>(ReducedCount(x.shape(), reduced)) - correction.value_or(1.0));
  if (!kStd) {
    ASSIGN_OR_RETURN(Tensor r, ctx.Call("mul", {g_centered, Scalar{2.0 / dof}}));
    return Grads{std::move(r)};
  }
  ASSIGN_OR_RETURN(const Tensor out, ExpandBack(ctx, ctx.output(), reduced));
  ASSIGN_OR_RETURN(const Tensor denominator, ctx.Call("mul", {out, Scalar{dof}}));
  ASSIGN_OR_RETURN(const Tensor quotient, ctx.Call("div", {g_centered, denominator}));
  ASSIGN_OR_RETURN(const Tensor std_is_0, ctx.Call("eq", {out, Scalar{int64_t{0}}}));
  ASSIGN_OR_RETURN(Tensor r, ctx.Call("where", {std_is_0, Scalar{int64_t{0}}, quotient}));
  return Grads{std::move(r)};
}

// max(x) spreads the gradient evenly over the elements equal to the
// maximum; max(x, dim) sends it to the element its index names.
absl::StatusOr<Grads> MaxMinBackward(const GradContext& ctx) {
  const Dims& shape = ctx.info(0).shape;
  const int64_t ndim = static_cast<int64_t>(shape.size());
  ASSIGN_OR_RETURN(const std::optional<int64_t> dim, SingleDim(ctx.forward(), ndim));
  const Scalar zero{int64_t{0}};
  if (!dim) {
    ASSIGN_OR_RETURN(const Tensor hits, ctx.Call("eq", {ctx.input(0), ctx.output(0)}));
    ASSIGN_OR_RETURN(const Tensor count, ctx.Call("sum", {hits}));
    ASSIGN_OR_RETURN(const Tensor share, ctx.Call("div", {ctx.grad(), count}));
    ASSIGN_OR_RETURN(Tensor r, ctx.Call("where", {hits, share, zero}));
    return Grads{std::move(r)};
  }
  if (*dim < 0) return Grads{ctx.grad()};  // a 0-d input is its own maximum
  ASSIGN_OR_RETURN(const bool keepdim, ctx.forward().Bool("keepdim", false));
  Tensor g = ctx.grad();
  Tensor indices = ctx.output(1);
  if (!keepdim) {
    ASSIGN_OR_RETURN(g, Unsqueeze(g, *dim));
    ASSIGN_OR_RETURN(indices, Unsqueeze(indices, *dim));
  }
  ASSIGN_OR_RETURN(const Tensor range,
                   Arange(Scalar{int64_t{0}}, Scalar{shape[*dim]}, Scalar{int64_t{1}},
                          TensorOptions{DType::kInt64, g.device(), ctx.budget()}));
  Dims along(ndim, 1);
  along[*dim] = shape[*dim];
  ASSIGN_OR_RETURN(const Tensor positions, Reshape(range, along));
  ASSIGN_OR_RETURN(const Tensor chosen, ctx.Call("eq", {positions, indices}));
  ASSIGN_OR_RETURN(Tensor r, ctx.Call("where", {chosen, g, zero}));
  return Grads{std::move(r)};
}

// The sum over the softmax dim, kept for broadcasting.
absl::StatusOr<Tensor> SumAlongSoftmaxDim(const GradContext& ctx, const Tensor& t) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> dim,
                   SingleDim(ctx.forward(), static_cast<int64_t>(ctx.info(0).shape.size())));
  std::map<std::string, Attr> attrs{{"keepdim", true}};
  if (dim && *dim >= 0) attrs.emplace("dim", Dims{*dim});
  return ctx.Call("sum", {t}, attrs);
}

// d softmax = y * (g - sum(g * y)); d log_softmax = g - exp(y) * sum(g).
template <bool kLog>
absl::StatusOr<Grads> SoftmaxBackward(const GradContext& ctx) {
  const Tensor& y = ctx.output();
  const Tensor& g = ctx.grad();
  if (kLog) {
    ASSIGN_OR_RETURN(const Tensor total, SumAlongSoftmaxDim(ctx, g));
    ASSIGN_OR_RETURN(const Tensor probs, ctx.Call("exp", {y}));
    ASSIGN_OR_RETURN(const Tensor spread, ctx.Call("mul", {probs, total}));
    ASSIGN_OR_RETURN(Tensor r, ctx.Call("sub", {g, spread}));
    return Grads{std::move(r)};
  }
  ASSIGN_OR_RETURN(const Tensor gy, ctx.Call("mul", {g, y}));
  ASSIGN_OR_RETURN(const Tensor total, SumAlongSoftmaxDim(ctx, gy));
  ASSIGN_OR_RETURN(const Tensor centered, ctx.Call("sub", {g, total}));
  ASSIGN_OR_RETURN(Tensor r, ctx.Call("mul", {y, centered}));
  return Grads{std::move(r)};
}

}  // namespace

void AddReductionOps(OpTable& table) {
  table.insert({
      {"sum", {FoldOp<FoldKind::kSum>, SumBackward}},
      {"prod", {FoldOp<FoldKind::kProd>, ProdBackward, kSavesInputs | kSavesOutputs}},
      {"mean", {FoldOp<FoldKind::kMean>, MeanBackward}},
      {"var", {VarianceOp<false>, VarianceBackward<false>, kSavesInputs}},
      {"std", {VarianceOp<true>, VarianceBackward<true>, kSavesInputs | kSavesOutputs}},
      {"max", {MaxMinOp<true>, MaxMinBackward, kSavesInputs | kSavesOutputs}},
      {"min", {MaxMinOp<false>, MaxMinBackward, kSavesInputs | kSavesOutputs}},
      {"argmax", ArgMaxMinOp<true>},
      {"argmin", ArgMaxMinOp<false>},
      {"softmax", {SoftmaxOp<false>, SoftmaxBackward<false>, kSavesOutputs}},
      {"log_softmax", {SoftmaxOp<true>, SoftmaxBackward<true>, kSavesOutputs}},
  });
}

}  // namespace tensord
