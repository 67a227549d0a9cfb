// Reductions: sum, prod, mean, var, std, max, min, argmax, argmin, and the
// softmax family, with PyTorch's semantics. Each op validates its dims
// (`dim`: one int or a list, negative allowed, absent or empty = every dim;
// `keepdim`) and its dtype here, once, and allocates the outputs; the loops
// in ops/cpu/reduction_loop.h only compute.
#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "ops/cpu/reduction_loop.h"
#include "ops/functors.h"
#include "ops/op.h"

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

}  // namespace

void AddReductionOps(OpTable& table) {
  table.insert({
      {"sum", FoldOp<FoldKind::kSum>},
      {"prod", FoldOp<FoldKind::kProd>},
      {"mean", FoldOp<FoldKind::kMean>},
      {"var", VarianceOp<false>},
      {"std", VarianceOp<true>},
      {"max", MaxMinOp<true>},
      {"min", MaxMinOp<false>},
      {"argmax", ArgMaxMinOp<true>},
      {"argmin", ArgMaxMinOp<false>},
      {"softmax", SoftmaxOp<false>},
      {"log_softmax", SoftmaxOp<true>},
  });
}

}  // namespace tensord
