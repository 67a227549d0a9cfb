// Elementwise ops: arithmetic, comparisons, math functions, where, clamp.
// Each op validates its operands, promotes dtypes (ops/promotion.h) and
// broadcasts shapes here, once; the CPU loops in ops/cpu/ only compute.
#include <array>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/create.h"
#include "ops/cpu/elementwise_loop.h"
#include "ops/functors.h"
#include "ops/op.h"
#include "ops/promotion.h"

namespace tensord {
namespace {

namespace f = functors;

enum Flags : unsigned {
  kNone = 0,
  kComplexOk = 1,       // defined for complex dtypes
  kBoolOk = 2,          // defined for bool tensors
  kFloatCompute = 4,    // integers and bools are computed in float32 (torch's default dtype)
  kBoolResult = 8,      // a predicate: the result is bool
  kRealResult = 16,     // complex inputs give their real dtype (abs)
};

// `operand` as a tensor of `dtype` with `shape`: scalars become a broadcast
// one-element tensor; tensors are cast (a copy) only when their dtype differs.
absl::StatusOr<Tensor> Prepare(const Operand& operand, DType dtype,
                               absl::Span<const int64_t> shape, const OpContext& ctx) {
  absl::StatusOr<Tensor> t;
  if (const Scalar* scalar = std::get_if<Scalar>(&operand)) {
    t = Full(Dims{}, *scalar, TensorOptions{dtype, Device::Cpu(), ctx.budget()});
  } else {
    t = Cast(std::get<Tensor>(operand), dtype);  // the tensor itself when dtype matches
  }
  if (!t.ok()) return t.status();
  return BroadcastTo(*t, shape);
}

absl::Status CheckDType(DType dtype, unsigned flags) {
  if (IsComplex(dtype) && !(flags & kComplexOk)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not supported for complex dtype ", DTypeName(dtype)));
  }
  if (dtype == DType::kBool && !(flags & (kBoolOk | kFloatCompute))) {
    return absl::InvalidArgumentError("not supported for bool tensors");
  }
  return absl::OkStatus();
}

DType ComputeDType(DType dtype, unsigned flags) {
  if ((flags & kFloatCompute) && !IsFloatingPoint(dtype) && !IsComplex(dtype)) {
    return DType::kFloat32;
  }
  return dtype;
}

DType ResultDType(DType compute, unsigned flags) {
  if (flags & kBoolResult) return DType::kBool;
  if ((flags & kRealResult) && IsComplex(compute)) {
    return compute == DType::kComplex64 ? DType::kFloat32 : DType::kFloat64;
  }
  return compute;
}

absl::Status RequireTensor(const OpContext& ctx) {
  for (size_t i = 0; i < ctx.num_args(); ++i) {
    if (std::holds_alternative<Tensor>(ctx.arg(i))) return absl::OkStatus();
  }
  return absl::InvalidArgumentError("needs at least one tensor operand");
}

template <typename F, unsigned kFlags>
absl::StatusOr<std::vector<Tensor>> BinaryOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  RETURN_IF_ERROR(RequireTensor(ctx));
  const std::array<Operand, 2> operands = {ctx.arg(0), ctx.arg(1)};
  const DType promoted = ResultType(operands);
  RETURN_IF_ERROR(CheckDType(promoted, kFlags));
  const DType compute = ComputeDType(promoted, kFlags);
  auto shape_of = [](const Operand& op) {
    const Tensor* t = std::get_if<Tensor>(&op);
    return t ? t->shape() : Dims{};
  };
  ASSIGN_OR_RETURN(Dims shape, BroadcastShapes(shape_of(operands[0]), shape_of(operands[1])));
  ASSIGN_OR_RETURN(Tensor a, Prepare(operands[0], compute, shape, ctx));
  ASSIGN_OR_RETURN(Tensor b, Prepare(operands[1], compute, shape, ctx));
  ASSIGN_OR_RETURN(Tensor out,
                   Tensor::Empty(ResultDType(compute, kFlags), shape, Device::Cpu(), ctx.budget()));
  VisitDType(compute, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr ((kFlags & kComplexOk) || !f::IsComplexT<T>::value) {
      cpu::Binary<T>(out, a, b, F{});
    }
  });
  return std::vector<Tensor>{out};
}

template <typename F, unsigned kFlags>
absl::StatusOr<std::vector<Tensor>> UnaryOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  RETURN_IF_ERROR(CheckDType(x.dtype(), kFlags));
  const DType compute = ComputeDType(x.dtype(), kFlags);
  ASSIGN_OR_RETURN(Tensor a, Prepare(x, compute, x.shape(), ctx));
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(ResultDType(compute, kFlags), x.shape(),
                                             Device::Cpu(), ctx.budget()));
  VisitDType(compute, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr ((kFlags & kComplexOk) || !f::IsComplexT<T>::value) {
      cpu::Unary<T>(out, a, F{});
    }
  });
  return std::vector<Tensor>{out};
}

absl::StatusOr<std::vector<Tensor>> WhereOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(3, 3));
  ASSIGN_OR_RETURN(Tensor cond, ctx.TensorArg(0));
  if (cond.dtype() != DType::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat("condition must be a bool tensor, not ", DTypeName(cond.dtype())));
  }
  const std::array<Operand, 2> values = {ctx.arg(1), ctx.arg(2)};
  const DType dtype = ResultType(values);
  Dims shape = cond.shape();
  for (const Operand& v : values) {
    if (const Tensor* t = std::get_if<Tensor>(&v)) {
      ASSIGN_OR_RETURN(shape, BroadcastShapes(shape, t->shape()));
    }
  }
  ASSIGN_OR_RETURN(Tensor a, Prepare(values[0], dtype, shape, ctx));
  ASSIGN_OR_RETURN(Tensor b, Prepare(values[1], dtype, shape, ctx));
  const Tensor c = BroadcastTo(cond, shape);
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(dtype, shape, Device::Cpu(), ctx.budget()));
  VisitDType(dtype, [&](auto tag) { cpu::Where<typename decltype(tag)::type>(out, c, a, b); });
  return std::vector<Tensor>{out};
}

// clamp(x, min=None, max=None): the bounds are numbers in the attributes
// "min" and "max"; either may be absent, not both.
absl::StatusOr<std::vector<Tensor>> ClampOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(std::optional<Scalar> lo, ctx.ScalarAttr("min"));
  ASSIGN_OR_RETURN(std::optional<Scalar> hi, ctx.ScalarAttr("max"));
  if (!lo && !hi) {
    return absl::InvalidArgumentError("at least one of 'min' or 'max' must be given");
  }
  std::vector<Operand> all = {x};
  if (lo) all.push_back(*lo);
  if (hi) all.push_back(*hi);
  const DType dtype = ResultType(all);
  RETURN_IF_ERROR(CheckDType(dtype, kNone));
  ASSIGN_OR_RETURN(Tensor result, Prepare(x, dtype, x.shape(), ctx));
  auto apply = [&](const Scalar& bound, auto functor) -> absl::Status {
    ASSIGN_OR_RETURN(Tensor b, Prepare(bound, dtype, x.shape(), ctx));
    ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(dtype, x.shape(), Device::Cpu(), ctx.budget()));
    VisitDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (!f::IsComplexT<T>::value) cpu::Binary<T>(out, result, b, functor);
    });
    result = out;
    return absl::OkStatus();
  };
  if (lo) RETURN_IF_ERROR(apply(*lo, f::Maximum{}));
  if (hi) RETURN_IF_ERROR(apply(*hi, f::Minimum{}));
  if (result.storage() == x.storage()) {  // neither bound applied a copy: never alias the input
    ASSIGN_OR_RETURN(result, Clone(result));
  }
  return std::vector<Tensor>{result};
}

constexpr unsigned kArith = kComplexOk | kBoolOk;
constexpr unsigned kOrdered = kBoolOk;  // comparisons of order: not for complex
constexpr unsigned kFloatMath = kComplexOk | kFloatCompute;

}  // namespace

void AddElementwiseOps(OpTable& table) {
  table.insert({
    {"add", BinaryOp<f::Add, kArith>},
    {"sub", BinaryOp<f::Sub, kComplexOk>},
    {"mul", BinaryOp<f::Mul, kArith>},
    {"div", BinaryOp<f::Div, kFloatMath>},
    {"pow", BinaryOp<f::Pow, kComplexOk>},
    {"maximum", BinaryOp<f::Maximum, kOrdered>},
    {"minimum", BinaryOp<f::Minimum, kOrdered>},
    {"eq", BinaryOp<f::Eq, kArith | kBoolResult>},
    {"ne", BinaryOp<f::Ne, kArith | kBoolResult>},
    {"lt", BinaryOp<f::Lt, kOrdered | kBoolResult>},
    {"le", BinaryOp<f::Le, kOrdered | kBoolResult>},
    {"gt", BinaryOp<f::Gt, kOrdered | kBoolResult>},
    {"ge", BinaryOp<f::Ge, kOrdered | kBoolResult>},
    {"neg", UnaryOp<f::Neg, kComplexOk>},
    {"abs", UnaryOp<f::Abs, kComplexOk | kBoolOk | kRealResult>},
    {"exp", UnaryOp<f::Exp, kFloatMath>},
    {"log", UnaryOp<f::Log, kFloatMath>},
    {"sqrt", UnaryOp<f::Sqrt, kFloatMath>},
    {"rsqrt", UnaryOp<f::Rsqrt, kFloatMath>},
    {"sin", UnaryOp<f::Sin, kFloatMath>},
    {"cos", UnaryOp<f::Cos, kFloatMath>},
    {"tanh", UnaryOp<f::Tanh, kFloatMath>},
    {"sigmoid", UnaryOp<f::Sigmoid, kFloatMath>},
    {"relu", UnaryOp<f::Relu, kNone>},
    {"gelu", UnaryOp<f::Gelu, kFloatCompute>},
    {"where", WhereOp},
    {"clamp", ClampOp},
  });
}

}  // namespace tensord
