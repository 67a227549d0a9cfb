// Elementwise ops: arithmetic, comparisons, math functions, where, clamp,
// and the backward of each differentiable one, next to the table at the end.
// Each op validates its operands, promotes dtypes (ops/promotion.h) and
// broadcasts shapes here, once; the CPU loops in ops/cpu/ only compute.
// Backward functions return gradients in the broadcast shape; the autograd
// engine sums them back to each input's shape.
#include <algorithm>
#include <array>
#include <limits>
#include <type_traits>

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
  kNoBoolOperand = 32,  // subtraction: no bool operand at all (promotion.h)
  kIntDivision = 64,    // integer division: a zero divisor is an error
  kFloatOnly = 128,     // floating dtypes only (gelu): no bool or integer input
  kScalarOpmath = 256,  // + - * /: with 16-bit floats a number keeps float precision
};

bool IsHalf(DType t) { return t == DType::kFloat16 || t == DType::kBFloat16; }

bool IsNumberLike(const Operand& op) {
  const Tensor* t = std::get_if<Tensor>(&op);
  return t == nullptr || t->ndim() == 0;
}

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
  if ((flags & kFloatOnly) && !IsFloatingPoint(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("only defined for floating point dtypes, not ", DTypeName(dtype)));
  }
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
  if (kFlags & kNoBoolOperand) RETURN_IF_ERROR(CheckSubtractionOperands(operands));
  const DType promoted = ResultType(operands);
  RETURN_IF_ERROR(CheckDType(promoted, kFlags));
  const DType compute = ComputeDType(promoted, kFlags);
  auto shape_of = [](const Operand& op) {
    const Tensor* t = std::get_if<Tensor>(&op);
    return t ? t->shape() : Dims{};
  };
  ASSIGN_OR_RETURN(Dims shape, BroadcastShapes(shape_of(operands[0]), shape_of(operands[1])));
  if constexpr ((kFlags & kScalarOpmath) != 0) {
    // PyTorch's CPU kernels read a number (or 0-d tensor) operand of a
    // float16/bfloat16 op in float, unrounded: `h * 30000` multiplies by
    // 30000, not by its bfloat16 neighbour 29952. Compute in float and round
    // the result once, which is what they do.
    if (IsHalf(compute) && (IsNumberLike(operands[0]) || IsNumberLike(operands[1]))) {
      auto as_float = [&](const Operand& op) -> absl::StatusOr<Tensor> {
        if (const Scalar* scalar = std::get_if<Scalar>(&op)) {
          ASSIGN_OR_RETURN(Tensor wide, Full(Dims{}, *scalar, TensorOptions{DType::kFloat64, Device::Cpu(), ctx.budget()}));
          return Prepare(wide, DType::kFloat32, shape, ctx);
        }
        return Prepare(op, DType::kFloat32, shape, ctx);
      };
      ASSIGN_OR_RETURN(Tensor a, as_float(operands[0]));
      ASSIGN_OR_RETURN(Tensor b, as_float(operands[1]));
      ASSIGN_OR_RETURN(Tensor wide, Tensor::Empty(DType::kFloat32, shape, Device::Cpu(), ctx.budget()));
      cpu::Binary<float>(wide, a, b, F{});
      ASSIGN_OR_RETURN(Tensor out, Cast(wide, compute));
      return std::vector<Tensor>{out};
    }
  }
  ASSIGN_OR_RETURN(Tensor a, Prepare(operands[0], compute, shape, ctx));
  ASSIGN_OR_RETURN(Tensor b, Prepare(operands[1], compute, shape, ctx));
  if constexpr ((kFlags & kIntDivision) != 0) {
    bool zero = false;
    VisitDType(compute, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_integral_v<T>) zero = cpu::AnyZero<T>(b);
    });
    if (zero) return absl::InvalidArgumentError("ZeroDivisionError: integer division by zero");
  }
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

// pow(a, b): an integer tensor to a negative Python-number power is refused,
// a Python-number exponent of 0 gives ones (even for 0j and NaN bases) and
// one of 1 a copy, all as in PyTorch; everything else is the functor.
absl::StatusOr<std::vector<Tensor>> PowOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  const Scalar* exponent = std::get_if<Scalar>(&ctx.arg(1));
  const Tensor* base = std::get_if<Tensor>(&ctx.arg(0));
  if (exponent && base) {
    const std::array<Operand, 2> operands = {ctx.arg(0), ctx.arg(1)};
    const DType dtype = ResultType(operands);
    if (IsIntegral(dtype) && exponent->is_integral() && exponent->ToInt64() < 0) {
      return absl::InvalidArgumentError("Integers to negative integer powers are not allowed");
    }
    if (exponent->ToDouble() == 0.0 && exponent->imag == 0.0) {
      ASSIGN_OR_RETURN(Tensor ones, Full(base->shape(), Scalar{int64_t{1}},
                                         TensorOptions{dtype, base->device(), ctx.budget()}));
      return std::vector<Tensor>{std::move(ones)};
    }
    if (exponent->ToDouble() == 1.0 && exponent->imag == 0.0) {  // a copy, even of a bool tensor
      ASSIGN_OR_RETURN(Tensor cast, Cast(*base, dtype));
      ASSIGN_OR_RETURN(Tensor copy, cast.storage() == base->storage() ? Clone(cast) : cast);
      return std::vector<Tensor>{std::move(copy)};
    }
  }
  return BinaryOp<f::Pow, kComplexOk>(ctx);
}

// A number bound of clamp in `dtype`. Integer bounds saturate into the
// dtype's range, which clamps to the same values, but one that excludes the
// whole range (uint8 with min=300) is refused; floating bounds must be
// convertible (core/scalar.h). Both as in PyTorch.
absl::StatusOr<Scalar> ClampBound(const Scalar& bound, DType dtype, bool is_min) {
  if (!IsIntegral(dtype) || !bound.is_integral()) {
    RETURN_IF_ERROR(CheckConvertible(bound, dtype));
    return bound;
  }
  int64_t lowest = 0, highest = 0;
  VisitDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      lowest = std::numeric_limits<T>::min();
      highest = std::numeric_limits<T>::max();
    }
  });
  const int64_t v = bound.ToInt64();
  if ((is_min && v > highest) || (!is_min && v < lowest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        is_min ? "min" : "max", " value ", v, " is outside the representable range of ",
        DTypeName(dtype)));
  }
  return Scalar{std::clamp(v, lowest, highest)};
}

// clamp(x, min=None, max=None) with number bounds in the attributes "min"
// and "max" (either may be absent, not both); or clamp(x, min, max) with
// both bounds positional, tensors or numbers, computed as
// minimum(maximum(x, min), max) in the dtype of all three, as in PyTorch.
absl::StatusOr<std::vector<Tensor>> ClampOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 3));
  if (ctx.num_args() == 2) {
    return absl::InvalidArgumentError("takes both bounds positionally, or clamp_min/clamp_max");
  }
  ASSIGN_OR_RETURN(Tensor x, ctx.TensorArg(0));
  std::vector<Operand> all = {x};
  std::optional<Scalar> lo, hi;
  if (ctx.num_args() == 3) {
    all.push_back(ctx.arg(1));
    all.push_back(ctx.arg(2));
  } else {
    ASSIGN_OR_RETURN(lo, ctx.ScalarAttr("min"));
    ASSIGN_OR_RETURN(hi, ctx.ScalarAttr("max"));
    if (!lo && !hi) {
      return absl::InvalidArgumentError("at least one of 'min' or 'max' must be given");
    }
    if (lo) all.push_back(*lo);
    if (hi) all.push_back(*hi);
  }
  const DType dtype = ResultType(all);
  RETURN_IF_ERROR(CheckDType(dtype, kNone));
  if (dtype == DType::kBool) return absl::InvalidArgumentError("not supported for bool tensors");
  Dims shape = x.shape();
  for (size_t i = 1; i < all.size(); ++i) {
    if (const Tensor* t = std::get_if<Tensor>(&all[i])) {
      ASSIGN_OR_RETURN(shape, BroadcastShapes(shape, t->shape()));
    }
  }
  if (ctx.num_args() == 1) {
    if (lo) {
      ASSIGN_OR_RETURN(all[1], ClampBound(*lo, dtype, true));
    }
    if (hi) {
      ASSIGN_OR_RETURN(all.back(), ClampBound(*hi, dtype, false));
    }
  }
  ASSIGN_OR_RETURN(Tensor result, Prepare(x, dtype, shape, ctx));
  auto apply = [&](const Operand& bound, auto functor) -> absl::Status {
    ASSIGN_OR_RETURN(Tensor b, Prepare(bound, dtype, shape, ctx));
    ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(dtype, shape, Device::Cpu(), ctx.budget()));
    VisitDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (!f::IsComplexT<T>::value) cpu::Binary<T>(out, result, b, functor);
    });
    result = out;
    return absl::OkStatus();
  };
  const bool has_lo = ctx.num_args() == 3 || lo.has_value();
  const bool has_hi = ctx.num_args() == 3 || hi.has_value();
  if (has_lo) RETURN_IF_ERROR(apply(all[1], f::Maximum{}));
  if (has_hi) RETURN_IF_ERROR(apply(all.back(), f::Minimum{}));
  return std::vector<Tensor>{result};
}

constexpr unsigned kArith = kComplexOk | kBoolOk;
constexpr unsigned kOrdered = kBoolOk;  // comparisons of order: not for complex
constexpr unsigned kFloatMath = kComplexOk | kFloatCompute;

// gelu(x, approximate="none"|"tanh")
absl::StatusOr<std::vector<Tensor>> GeluOp(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<std::string> approximate, ctx.Text("approximate"));
  if (!approximate || *approximate == "none") return UnaryOp<f::Gelu, kFloatOnly>(ctx);
  if (*approximate == "tanh") return UnaryOp<f::GeluTanh, kFloatOnly>(ctx);
  return absl::InvalidArgumentError(
      absl::StrCat("approximate must be 'none' or 'tanh', not '", *approximate, "'"));
}

// gelu_backward(grad, x, approximate=...)
absl::StatusOr<std::vector<Tensor>> GeluBackwardOp(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<std::string> approximate, ctx.Text("approximate"));
  if (approximate && *approximate == "tanh") return BinaryOp<f::GeluTanhGrad, kFloatCompute>(ctx);
  return BinaryOp<f::GeluGrad, kFloatCompute>(ctx);
}

// ---- backward -------------------------------------------------------------------
// g is the gradient of the output; a and b the forward's operands (tensors
// or numbers), saved where the table below says kSavesInputs.

using Grads = std::vector<std::optional<Tensor>>;

absl::StatusOr<Grads> AddBackward(const GradContext& ctx) {
  return Grads{ctx.grad(), ctx.grad()};
}

absl::StatusOr<Grads> SubBackward(const GradContext& ctx) {
  Grads r{ctx.grad(), std::nullopt};
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(r[1], ctx.Call("neg", {ctx.grad()}));
  }
  return r;
}

absl::StatusOr<Grads> MulBackward(const GradContext& ctx) {
  Grads r(2);
  if (ctx.needs_grad(0)) {
    ASSIGN_OR_RETURN(r[0], ctx.Call("mul", {ctx.grad(), ctx.operand(1)}));
  }
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(r[1], ctx.Call("mul", {ctx.grad(), ctx.operand(0)}));
  }
  return r;
}

// d(a/b) = g/b, -g a / b^2
absl::StatusOr<Grads> DivBackward(const GradContext& ctx) {
  Grads r(2);
  ASSIGN_OR_RETURN(const Tensor g_over_b, ctx.Call("div", {ctx.grad(), ctx.operand(1)}));
  if (ctx.needs_grad(0)) r[0] = g_over_b;
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(const Tensor a_over_b, ctx.Call("div", {ctx.operand(0), ctx.operand(1)}));
    ASSIGN_OR_RETURN(const Tensor product, ctx.Call("mul", {g_over_b, a_over_b}));
    ASSIGN_OR_RETURN(r[1], ctx.Call("neg", {product}));
  }
  return r;
}

// d(a^b) = g b a^(b-1) (0 where b == 0), g a^b log(a) (0 where a == 0 and b >= 0),
// PyTorch's conventions at the points where the formulas give NaN.
absl::StatusOr<Grads> PowBackward(const GradContext& ctx) {
  const Tensor& g = ctx.grad();
  auto as_tensor = [&](const Operand& operand) -> absl::StatusOr<Tensor> {
    if (const Tensor* t = std::get_if<Tensor>(&operand)) return *t;
    return Full(Dims{}, std::get<Scalar>(operand), TensorOptions{g.dtype(), g.device(), ctx.budget()});
  };
  ASSIGN_OR_RETURN(const Tensor a, as_tensor(ctx.operand(0)));
  ASSIGN_OR_RETURN(const Tensor b, as_tensor(ctx.operand(1)));
  Grads r(2);
  if (ctx.needs_grad(0)) {
    ASSIGN_OR_RETURN(const Tensor b_minus_1, ctx.Call("sub", {b, Scalar{int64_t{1}}}));
    ASSIGN_OR_RETURN(const Tensor power, ctx.Call("pow", {a, b_minus_1}));
    ASSIGN_OR_RETURN(const Tensor scaled, ctx.Call("mul", {power, b}));
    ASSIGN_OR_RETURN(const Tensor grad, ctx.Call("mul", {scaled, g}));
    ASSIGN_OR_RETURN(const Tensor b_is_0, ctx.Call("eq", {b, Scalar{int64_t{0}}}));
    ASSIGN_OR_RETURN(r[0], ctx.Call("where", {b_is_0, Scalar{int64_t{0}}, grad}));
  }
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(const Tensor log_a, ctx.Call("log", {a}));
    ASSIGN_OR_RETURN(const Tensor scaled, ctx.Call("mul", {ctx.output(), log_a}));
    ASSIGN_OR_RETURN(const Tensor grad, ctx.Call("mul", {scaled, g}));
    ASSIGN_OR_RETURN(const Tensor a_is_0, ctx.Call("eq", {a, Scalar{int64_t{0}}}));
    ASSIGN_OR_RETURN(const Tensor b_nonneg, ctx.Call("ge", {b, Scalar{int64_t{0}}}));
    ASSIGN_OR_RETURN(const Tensor mask, ctx.Call("mul", {a_is_0, b_nonneg}));
    ASSIGN_OR_RETURN(r[1], ctx.Call("where", {mask, Scalar{int64_t{0}}, grad}));
  }
  return r;
}

// g * d(op)/dx for unary ops, as one op applied to (g, saved): `saved` is
// the input (kSavesInputs) or the output (kSavesOutputs).
template <bool kFromOutput>
BackwardFunction GradOp(std::string op, std::map<std::string, Attr> attrs = {}) {
  return [op, attrs](const GradContext& ctx) -> absl::StatusOr<Grads> {
    const Tensor& saved = kFromOutput ? ctx.output() : ctx.input(0);
    ASSIGN_OR_RETURN(Tensor g, ctx.Call(op, {ctx.grad(), saved}, attrs));
    return Grads{std::move(g)};
  };
}

absl::StatusOr<Grads> NegBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("neg", {ctx.grad()}));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> AbsBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor sign, ctx.Call("sign", {ctx.input(0)}));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), sign}));
  return Grads{std::move(g)};
}

// d exp(x) = g exp(x), from the saved output.
absl::StatusOr<Grads> ExpBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), ctx.output()}));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> LogBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("div", {ctx.grad(), ctx.input(0)}));
  return Grads{std::move(g)};
}

// d sqrt(x) = g / (2 sqrt(x))
absl::StatusOr<Grads> SqrtBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor twice, ctx.Call("mul", {ctx.output(), Scalar{int64_t{2}}}));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("div", {ctx.grad(), twice}));
  return Grads{std::move(g)};
}

// d x^(-1/2) = -g x^(-3/2) / 2 = -g y^3 / 2
absl::StatusOr<Grads> RsqrtBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor cube, ctx.Call("pow", {ctx.output(), Scalar{int64_t{3}}}));
  ASSIGN_OR_RETURN(const Tensor scaled, ctx.Call("mul", {cube, Scalar{-0.5}}));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), scaled}));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> SinBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor cos, ctx.Call("cos", {ctx.input(0)}));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), cos}));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> CosBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor sin, ctx.Call("sin", {ctx.input(0)}));
  ASSIGN_OR_RETURN(const Tensor minus_sin, ctx.Call("neg", {sin}));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), minus_sin}));
  return Grads{std::move(g)};
}

absl::StatusOr<Grads> GeluBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<std::string> approximate,
                   ctx.forward().Text("approximate"));
  std::map<std::string, Attr> attrs;
  if (approximate) attrs.emplace("approximate", *approximate);
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("gelu_backward", {ctx.grad(), ctx.input(0)}, attrs));
  return Grads{std::move(g)};
}

// The share of the gradient of maximum(a, b) (minimum with kMaximum false)
// that goes to a: 1 where a wins, 0.5 on a tie, as in PyTorch.
template <bool kMaximum>
absl::StatusOr<Tensor> WinnerShare(const GradContext& ctx, const Operand& a, const Operand& b) {
  ASSIGN_OR_RETURN(const Tensor tie, ctx.Call("eq", {a, b}));
  ASSIGN_OR_RETURN(const Tensor wins, ctx.Call(kMaximum ? "gt" : "lt", {a, b}));
  return ctx.Call("where", {tie, Scalar{0.5}, wins});
}

template <bool kMaximum>
absl::StatusOr<Grads> MaxMinBackward(const GradContext& ctx) {
  Grads r(2);
  for (int i = 0; i < 2; ++i) {
    if (!ctx.needs_grad(i)) continue;
    ASSIGN_OR_RETURN(const Tensor share,
                     WinnerShare<kMaximum>(ctx, ctx.operand(i), ctx.operand(1 - i)));
    ASSIGN_OR_RETURN(r[i], ctx.Call("mul", {ctx.grad(), share}));
  }
  return r;
}

absl::StatusOr<Grads> WhereBackward(const GradContext& ctx) {
  Grads r(3);
  const Scalar zero{int64_t{0}};
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(r[1], ctx.Call("where", {ctx.input(0), ctx.grad(), zero}));
  }
  if (ctx.needs_grad(2)) {
    ASSIGN_OR_RETURN(r[2], ctx.Call("where", {ctx.input(0), zero, ctx.grad()}));
  }
  return r;
}

// Number bounds: the gradient passes where min <= x <= max, as in PyTorch.
// Positional bounds: the chain rule through minimum(maximum(x, min), max).
absl::StatusOr<Grads> ClampBackward(const GradContext& ctx) {
  if (ctx.num_inputs() == 3) {
    const Operand &x = ctx.operand(0), &lo = ctx.operand(1), &hi = ctx.operand(2);
    ASSIGN_OR_RETURN(const Tensor inner, ctx.Call("maximum", {x, lo}));
    ASSIGN_OR_RETURN(const Tensor inner_share, WinnerShare<false>(ctx, inner, hi));
    ASSIGN_OR_RETURN(const Tensor g_inner, ctx.Call("mul", {ctx.grad(), inner_share}));
    Grads r(3);
    if (ctx.needs_grad(0)) {
      ASSIGN_OR_RETURN(const Tensor share, WinnerShare<true>(ctx, x, lo));
      ASSIGN_OR_RETURN(r[0], ctx.Call("mul", {g_inner, share}));
    }
    if (ctx.needs_grad(1)) {
      ASSIGN_OR_RETURN(const Tensor share, WinnerShare<true>(ctx, lo, x));
      ASSIGN_OR_RETURN(r[1], ctx.Call("mul", {g_inner, share}));
    }
    if (ctx.needs_grad(2)) {
      ASSIGN_OR_RETURN(const Tensor share, WinnerShare<false>(ctx, hi, inner));
      ASSIGN_OR_RETURN(r[2], ctx.Call("mul", {ctx.grad(), share}));
    }
    return r;
  }
  ASSIGN_OR_RETURN(const std::optional<Scalar> lo, ctx.forward().ScalarAttr("min"));
  ASSIGN_OR_RETURN(const std::optional<Scalar> hi, ctx.forward().ScalarAttr("max"));
  std::optional<Tensor> inside;
  if (lo) {
    ASSIGN_OR_RETURN(inside, ctx.Call("ge", {ctx.input(0), *lo}));
  }
  if (hi) {
    ASSIGN_OR_RETURN(const Tensor below, ctx.Call("le", {ctx.input(0), *hi}));
    if (inside) {
      ASSIGN_OR_RETURN(inside, ctx.Call("mul", {*inside, below}));
    } else {
      inside = below;
    }
  }
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("where", {*inside, ctx.grad(), Scalar{int64_t{0}}}));
  return Grads{std::move(g)};
}

// d(a mod b) = g, -g floor(a / b)
absl::StatusOr<Grads> RemainderBackward(const GradContext& ctx) {
  Grads r{ctx.grad(), std::nullopt};
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(const Tensor quotient,
                     ctx.Call("floor_divide", {ctx.operand(0), ctx.operand(1)}));
    ASSIGN_OR_RETURN(const Tensor product, ctx.Call("mul", {ctx.grad(), quotient}));
    ASSIGN_OR_RETURN(r[1], ctx.Call("neg", {product}));
  }
  return r;
}

}  // namespace

void AddElementwiseOps(OpTable& table) {
  table.insert({
    {"add", {BinaryOp<f::Add, kArith | kScalarOpmath>, AddBackward}},
    {"sub", {BinaryOp<f::Sub, kComplexOk | kNoBoolOperand | kScalarOpmath>, SubBackward}},
    {"mul", {BinaryOp<f::Mul, kArith | kScalarOpmath>, MulBackward, kSavesInputs}},
    {"div", {BinaryOp<f::Div, kFloatMath | kScalarOpmath>, DivBackward, kSavesInputs}},
    {"pow", {PowOp, PowBackward, kSavesInputs | kSavesOutputs}},
    // Not differentiable (its gradient is zero almost everywhere), as in PyTorch.
    {"floor_divide", BinaryOp<f::FloorDivide, kIntDivision>},
    {"remainder", {BinaryOp<f::Remainder, kIntDivision>, RemainderBackward, kSavesInputs}},
    {"maximum", {BinaryOp<f::Maximum, kOrdered>, MaxMinBackward<true>, kSavesInputs}},
    {"minimum", {BinaryOp<f::Minimum, kOrdered>, MaxMinBackward<false>, kSavesInputs}},
    {"eq", BinaryOp<f::Eq, kArith | kBoolResult>},
    {"ne", BinaryOp<f::Ne, kArith | kBoolResult>},
    {"lt", BinaryOp<f::Lt, kOrdered | kBoolResult>},
    {"le", BinaryOp<f::Le, kOrdered | kBoolResult>},
    {"gt", BinaryOp<f::Gt, kOrdered | kBoolResult>},
    {"ge", BinaryOp<f::Ge, kOrdered | kBoolResult>},
    {"neg", {UnaryOp<f::Neg, kComplexOk>, NegBackward}},
    {"abs", {UnaryOp<f::Abs, kComplexOk | kRealResult>, AbsBackward, kSavesInputs}},
    {"sign", UnaryOp<f::Sign, kBoolOk>},
    {"exp", {UnaryOp<f::Exp, kFloatMath>, ExpBackward, kSavesOutputs}},
    {"log", {UnaryOp<f::Log, kFloatMath>, LogBackward, kSavesInputs}},
    {"log1p", {UnaryOp<f::Log1p, kFloatMath>, GradOp<false>("log1p_backward"), kSavesInputs}},
    {"sqrt", {UnaryOp<f::Sqrt, kFloatMath>, SqrtBackward, kSavesOutputs}},
    {"rsqrt", {UnaryOp<f::Rsqrt, kFloatMath>, RsqrtBackward, kSavesOutputs}},
    {"sin", {UnaryOp<f::Sin, kFloatMath>, SinBackward, kSavesInputs}},
    {"cos", {UnaryOp<f::Cos, kFloatMath>, CosBackward, kSavesInputs}},
    {"tanh", {UnaryOp<f::Tanh, kFloatMath>, GradOp<true>("tanh_backward"), kSavesOutputs}},
    {"sigmoid",
     {UnaryOp<f::Sigmoid, kFloatMath>, GradOp<true>("sigmoid_backward"), kSavesOutputs}},
    {"relu", {UnaryOp<f::Relu, kNone>, GradOp<true>("relu_backward"), kSavesOutputs}},
    {"gelu", {GeluOp, GeluBackward, kSavesInputs}},
    {"where", {WhereOp, WhereBackward, kSavesInputs}},
    {"clamp", {ClampOp, ClampBackward, kSavesInputs}},
    {"clamp_min", {BinaryOp<f::Maximum, kOrdered>, MaxMinBackward<true>, kSavesInputs}},
    {"clamp_max", {BinaryOp<f::Minimum, kOrdered>, MaxMinBackward<false>, kSavesInputs}},
    // Backward kernels: (gradient, saved value) -> input gradient.
    {"tanh_backward", BinaryOp<f::TanhGrad, kFloatCompute>},
    {"sigmoid_backward", BinaryOp<f::SigmoidGrad, kFloatCompute>},
    {"relu_backward", BinaryOp<f::ReluGrad, kNone>},
    {"gelu_backward", GeluBackwardOp},
    {"log1p_backward", BinaryOp<f::Log1pGrad, kFloatCompute>},
  });
}

}  // namespace tensord
