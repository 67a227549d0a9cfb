// Neural-network ops, as single ops so that a layer or a loss costs one
// RPC: linear, dropout, and the losses mse_loss, l1_loss, nll_loss,
// cross_entropy and binary_cross_entropy_with_logits, each with its
// backward beside it. They are built from the elementwise, reduction and
// matmul ops; validation (shapes, dtypes, class indices, `reduction`)
// happens here, once, with PyTorch's rules and messages.

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/create.h"
#include "core/views.h"
#include "ops/op.h"
#include "ops/promotion.h"

namespace tensord {
namespace {

using Grads = std::vector<std::optional<Tensor>>;
using Outputs = std::vector<Tensor>;

absl::StatusOr<Tensor> Call(const OpContext& ctx, absl::string_view op, std::vector<Operand> args,
                            std::map<std::string, Attr> attrs = {}) {
  return CallOp(op, std::move(args), ctx.budget(), std::move(attrs));
}

absl::Status RequireFloat(const Tensor& t, absl::string_view what) {
  if (IsFloatingPoint(t.dtype())) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " must be a floating-point tensor, not ", DTypeName(t.dtype()),
      " (cast it first, e.g. with .float())"));
}

// ---- linear: x @ W^T + b ------------------------------------------------------------

absl::StatusOr<Outputs> LinearOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 3));
  ASSIGN_OR_RETURN(const Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor w, ctx.TensorArg(1));
  if (w.ndim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight must be 2-D [out_features, in_features], got shape ",
                     DimsToString(w.shape())));
  }
  if (x.ndim() == 0 || x.shape().back() != w.shape()[1]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input of shape ", DimsToString(x.shape()), " cannot be multiplied by a weight of shape ",
        DimsToString(w.shape()), ": its last dim must be in_features = ", w.shape()[1]));
  }
  ASSIGN_OR_RETURN(const Tensor wt, Transpose(w, 0, 1));
  ASSIGN_OR_RETURN(Tensor out, Call(ctx, "matmul", {x, wt}));
  if (ctx.num_args() == 3) {
    ASSIGN_OR_RETURN(const Tensor b, ctx.TensorArg(2));
    if (b.ndim() > 1 || (b.ndim() == 1 && b.shape()[0] != w.shape()[0])) {
      return absl::InvalidArgumentError(absl::StrCat("bias must have shape [", w.shape()[0],
                                                     "], got ", DimsToString(b.shape())));
    }
    ASSIGN_OR_RETURN(out, Call(ctx, "add", {out, b}));
  }
  return Outputs{std::move(out)};
}

// d(x W^T + b) = g W, g^T x (over all leading dims), g (summed by the engine).
absl::StatusOr<Grads> LinearBackward(const GradContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor& g = ctx.grad();
  Grads r(ctx.num_inputs());
  if (ctx.needs_grad(0)) {
    ASSIGN_OR_RETURN(r[0], ctx.Call("matmul", {g, w}));
  }
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(const Tensor g2, Reshape(g, Dims{-1, w.shape()[0]}));
    ASSIGN_OR_RETURN(const Tensor x2, Reshape(x, Dims{-1, w.shape()[1]}));
    ASSIGN_OR_RETURN(const Tensor g2t, Transpose(g2, 0, 1));
    ASSIGN_OR_RETURN(r[1], ctx.Call("matmul", {g2t, x2}));
  }
  if (ctx.num_inputs() == 3 && ctx.needs_grad(2)) r[2] = g;
  return r;
}

// ---- reductions of elementwise losses ---------------------------------------------

enum class Reduction { kNone, kMean, kSum };

absl::StatusOr<Reduction> GetReduction(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<std::string> name, ctx.Text("reduction"));
  if (!name || *name == "mean") return Reduction::kMean;
  if (*name == "sum") return Reduction::kSum;
  if (*name == "none") return Reduction::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("'", *name, "' is not a valid value for reduction (mean, sum or none)"));
}

absl::StatusOr<Tensor> Reduce(const OpContext& ctx, const Tensor& losses, Reduction reduction) {
  switch (reduction) {
    case Reduction::kNone: return losses;
    case Reduction::kSum: return Call(ctx, "sum", {losses});
    case Reduction::kMean: return Call(ctx, "mean", {losses});
  }
  return losses;
}

// The output gradient spread over `shape`: broadcast for sum, and divided
// by the element count for mean.
absl::StatusOr<Tensor> SpreadGrad(const GradContext& ctx, absl::Span<const int64_t> shape,
                                  int64_t count) {
  ASSIGN_OR_RETURN(const Reduction reduction, GetReduction(ctx.forward()));
  const Tensor& g = ctx.grad();
  if (reduction == Reduction::kNone) return g;
  const Tensor spread = BroadcastTo(g, shape);
  if (reduction == Reduction::kSum) return spread;
  return ctx.Call("div", {spread, Scalar{count}});
}

int64_t Numel(absl::Span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// ---- mse_loss, l1_loss ----------------------------------------------------------------

template <bool kSquared>
absl::StatusOr<Outputs> PointwiseLossOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor input, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor target, ctx.TensorArg(1));
  RETURN_IF_ERROR(RequireFloat(input, "input"));
  ASSIGN_OR_RETURN(const Reduction reduction, GetReduction(ctx));
  ASSIGN_OR_RETURN(const Tensor diff, Call(ctx, "sub", {input, target}));
  ASSIGN_OR_RETURN(const Tensor losses,
                   kSquared ? Call(ctx, "mul", {diff, diff}) : Call(ctx, "abs", {diff}));
  ASSIGN_OR_RETURN(Tensor out, Reduce(ctx, losses, reduction));
  return Outputs{std::move(out)};
}

// d mse = 2 (a - b) g, d l1 = sign(a - b) g; -that for the target.
template <bool kSquared>
absl::StatusOr<Grads> PointwiseLossBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Tensor diff, ctx.Call("sub", {ctx.input(0), ctx.input(1)}));
  ASSIGN_OR_RETURN(const Tensor slope, kSquared ? ctx.Call("mul", {diff, Scalar{int64_t{2}}})
                                                : ctx.Call("sign", {diff}));
  ASSIGN_OR_RETURN(const Tensor g, SpreadGrad(ctx, diff.shape(), diff.numel()));
  ASSIGN_OR_RETURN(const Tensor grad, ctx.Call("mul", {slope, g}));
  Grads r{grad, std::nullopt};
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(r[1], ctx.Call("neg", {grad}));
  }
  return r;
}

// ---- nll_loss, cross_entropy ------------------------------------------------------------
//
// input: [C], [N, C] or [N, C, d1, ...] (classes along dim 1, or 0 for 1-D);
// target: class indices of the input's shape without the class dim, or (for
// cross_entropy) probabilities of the input's shape. Indices equal to
// `ignore_index` (default -100) add nothing and do not count for the mean.

struct ClassLayout {
  int64_t class_dim;
  int64_t classes;
};

absl::StatusOr<ClassLayout> CheckClassInput(const Tensor& input) {
  if (input.ndim() == 0) {
    return absl::InvalidArgumentError("input must have a class dimension, got a 0-d tensor");
  }
  const int64_t class_dim = input.ndim() == 1 ? 0 : 1;
  return ClassLayout{class_dim, input.shape()[class_dim]};
}

// One-hot of the class indices along the class dim (bool, input's shape
// after broadcasting); ignore_index rows are all false.
absl::StatusOr<Tensor> OneHot(const Tensor& target, const ClassLayout& layout,
                              int64_t input_ndim, const std::shared_ptr<MemoryBudget>& budget) {
  ASSIGN_OR_RETURN(const Tensor range,
                   Arange(Scalar{int64_t{0}}, Scalar{layout.classes}, Scalar{int64_t{1}},
                          TensorOptions{DType::kInt64, target.device(), budget}));
  Dims along(input_ndim, 1);
  along[layout.class_dim] = layout.classes;
  ASSIGN_OR_RETURN(const Tensor classes, Reshape(range, along));
  ASSIGN_OR_RETURN(const Tensor expanded, Unsqueeze(target, layout.class_dim));
  return CallOp("eq", {classes, expanded}, budget);
}

absl::StatusOr<int64_t> IgnoreIndex(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> ignore, ctx.Int("ignore_index"));
  return ignore.value_or(-100);
}

// Checks index targets: integer dtype, the input's shape without the class
// dim, every value a class or ignore_index ("Target 7 is out of bounds.").
absl::Status CheckClassTarget(const Tensor& input, const Tensor& target,
                              const ClassLayout& layout, int64_t ignore_index) {
  if (!IsIntegral(target.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "class targets must be an integer tensor (int64), not ", DTypeName(target.dtype())));
  }
  Dims expected = input.shape();
  expected.erase(expected.begin() + layout.class_dim);
  if (target.shape() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected target of shape ", DimsToString(expected), " for input of shape ",
        DimsToString(input.shape()), ", got ", DimsToString(target.shape())));
  }
  ASSIGN_OR_RETURN(const Tensor values, Cast(target, DType::kInt64));
  ASSIGN_OR_RETURN(const Tensor dense, Contiguous(values));
  const int64_t* data = reinterpret_cast<const int64_t*>(dense.data());
  for (int64_t i = 0; i < dense.numel(); ++i) {
    if (data[i] != ignore_index && (data[i] < 0 || data[i] >= layout.classes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Target ", data[i], " is out of bounds: there are ", layout.classes, " classes"));
    }
  }
  return absl::OkStatus();
}

// Weight of each target position: 1, or 0 where the target is ignore_index.
absl::StatusOr<Tensor> KeptPositions(const Tensor& target, int64_t ignore_index,
                                     const std::shared_ptr<MemoryBudget>& budget) {
  return CallOp("ne", {target, Scalar{ignore_index}}, budget);
}

// The weights w each log-probability gets: for index targets the one-hot
// (1 - eps) + eps / C on kept positions; for probabilities t (1 - eps) + eps / C.
absl::StatusOr<Tensor> TargetWeights(const Tensor& logp, const Tensor& target,
                                     const ClassLayout& layout, int64_t ignore_index,
                                     double smoothing, const std::shared_ptr<MemoryBudget>& budget) {
  const double uniform = smoothing / static_cast<double>(layout.classes);
  // Numbers as 0-d tensors of the input's dtype, so that nothing is
  // computed in float32 (where() or add() of two numbers would be).
  auto number = [&](double value) {
    return Full(Dims{}, Scalar{value}, TensorOptions{logp.dtype(), logp.device(), budget});
  };
  if (IsFloatingPoint(target.dtype())) {
    if (smoothing == 0) return target;
    ASSIGN_OR_RETURN(const Tensor scaled, CallOp("mul", {target, Scalar{1.0 - smoothing}}, budget));
    return CallOp("add", {scaled, Scalar{uniform}}, budget);
  }
  ASSIGN_OR_RETURN(const Tensor hot, OneHot(target, layout, logp.ndim(), budget));
  ASSIGN_OR_RETURN(const Tensor kept, KeptPositions(target, ignore_index, budget));
  ASSIGN_OR_RETURN(const Tensor kept_c, Unsqueeze(kept, layout.class_dim));
  // ignore_index may be a real class: its one-hot entry must not count.
  ASSIGN_OR_RETURN(const Tensor counted, CallOp("mul", {hot, kept_c}, budget));
  ASSIGN_OR_RETURN(const Tensor on, number(1.0 - smoothing + uniform));
  ASSIGN_OR_RETURN(const Tensor off, number(uniform));
  ASSIGN_OR_RETURN(const Tensor zero, number(0.0));
  ASSIGN_OR_RETURN(const Tensor kept_row, CallOp("where", {kept_c, off, zero}, budget));
  return CallOp("where", {counted, on, kept_row}, budget);
}

absl::StatusOr<int64_t> MeanCount(const Tensor& target, const ClassLayout& layout,
                                  const Dims& input_shape, int64_t ignore_index,
                                  const std::shared_ptr<MemoryBudget>& budget) {
  if (IsFloatingPoint(target.dtype())) return Numel(input_shape) / std::max<int64_t>(layout.classes, 1);
  ASSIGN_OR_RETURN(const Tensor kept, KeptPositions(target, ignore_index, budget));
  ASSIGN_OR_RETURN(const Tensor count, CallOp("sum", {kept}, budget));
  return *reinterpret_cast<const int64_t*>(count.data());
}

// Shared by nll_loss (input = log-probabilities) and cross_entropy (logits).
template <bool kFromLogits>
absl::StatusOr<Outputs> ClassLossOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 2));
  ASSIGN_OR_RETURN(const Tensor input, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor target, ctx.TensorArg(1));
  RETURN_IF_ERROR(RequireFloat(input, "input"));
  ASSIGN_OR_RETURN(const Reduction reduction, GetReduction(ctx));
  ASSIGN_OR_RETURN(const ClassLayout layout, CheckClassInput(input));
  ASSIGN_OR_RETURN(const int64_t ignore_index, IgnoreIndex(ctx));
  ASSIGN_OR_RETURN(const std::optional<double> smoothing_attr, ctx.Double("label_smoothing"));
  const double smoothing = smoothing_attr.value_or(0.0);
  if (!(smoothing >= 0.0 && smoothing <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_smoothing must be between 0.0 and 1.0, got ", smoothing));
  }
  if (IsFloatingPoint(target.dtype())) {
    if (!kFromLogits) {
      return absl::InvalidArgumentError("nll_loss needs integer class targets");
    }
    if (target.shape() != input.shape()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class-probability targets must have the input's shape ", DimsToString(input.shape()),
          ", got ", DimsToString(target.shape())));
    }
    if (ignore_index >= 0) {  // a class index: meaningless for probabilities
      return absl::InvalidArgumentError(absl::StrCat(
          "ignore_index (", ignore_index, ") is not supported for class-probability targets"));
    }
  } else {
    RETURN_IF_ERROR(CheckClassTarget(input, target, layout, ignore_index));
  }
  Tensor logp = input;
  if (kFromLogits) {
    ASSIGN_OR_RETURN(logp, Call(ctx, "log_softmax", {input}, {{"dim", layout.class_dim}}));
  }
  ASSIGN_OR_RETURN(const Tensor weights,
                   TargetWeights(logp, target, layout, ignore_index, smoothing, ctx.budget()));
  ASSIGN_OR_RETURN(const Tensor weighted, Call(ctx, "mul", {logp, weights}));
  ASSIGN_OR_RETURN(const Tensor summed, Call(ctx, "sum", {weighted}, {{"dim", layout.class_dim}}));
  ASSIGN_OR_RETURN(Tensor losses, Call(ctx, "neg", {summed}));
  switch (reduction) {
    case Reduction::kNone: break;
    case Reduction::kSum: {
      ASSIGN_OR_RETURN(losses, Call(ctx, "sum", {losses}));
      break;
    }
    case Reduction::kMean: {
      ASSIGN_OR_RETURN(const int64_t count,
                       MeanCount(target, layout, input.shape(), ignore_index, ctx.budget()));
      ASSIGN_OR_RETURN(const Tensor total, Call(ctx, "sum", {losses}));
      ASSIGN_OR_RETURN(losses, Call(ctx, "div", {total, Scalar{count}}));  // 0/0 = nan, as torch
      break;
    }
  }
  return Outputs{std::move(losses)};
}

// With w the target weights and s = g per position (divided by the count
// for mean): d nll/d logp = -w s; d ce/d x = (softmax(x) sum_c w - w) s.
template <bool kFromLogits>
absl::StatusOr<Grads> ClassLossBackward(const GradContext& ctx) {
  const Tensor& input = ctx.input(0);
  const Tensor& target = ctx.input(1);
  ASSIGN_OR_RETURN(const Reduction reduction, GetReduction(ctx.forward()));
  ASSIGN_OR_RETURN(const ClassLayout layout, CheckClassInput(input));
  ASSIGN_OR_RETURN(const int64_t ignore_index, IgnoreIndex(ctx.forward()));
  ASSIGN_OR_RETURN(const std::optional<double> smoothing, ctx.forward().Double("label_smoothing"));
  Tensor logp = input;
  if (kFromLogits) {
    ASSIGN_OR_RETURN(logp, ctx.Call("log_softmax", {input}, {{"dim", layout.class_dim}}));
  }
  ASSIGN_OR_RETURN(const Tensor weights, TargetWeights(logp, target, layout, ignore_index,
                                                       smoothing.value_or(0.0), ctx.budget()));
  Dims position_shape = input.shape();
  position_shape.erase(position_shape.begin() + layout.class_dim);
  Tensor scale = ctx.grad();
  if (reduction != Reduction::kNone) {
    scale = BroadcastTo(ctx.grad(), position_shape);
    if (reduction == Reduction::kMean) {
      ASSIGN_OR_RETURN(const int64_t count,
                       MeanCount(target, layout, input.shape(), ignore_index, ctx.budget()));
      // Every target ignored: the loss is 0/0 = nan, but every weight is 0
      // and so is the gradient, as in PyTorch (dividing by 0 would give nan).
      ASSIGN_OR_RETURN(scale, ctx.Call("div", {scale, Scalar{std::max<int64_t>(count, 1)}}));
    }
  }
  ASSIGN_OR_RETURN(const Tensor scale_c, Unsqueeze(scale, layout.class_dim));
  std::optional<Tensor> slope;
  if (kFromLogits) {
    ASSIGN_OR_RETURN(const Tensor probs, ctx.Call("exp", {logp}));
    ASSIGN_OR_RETURN(const Tensor mass,
                     ctx.Call("sum", {weights}, {{"dim", layout.class_dim}, {"keepdim", true}}));
    ASSIGN_OR_RETURN(const Tensor predicted, ctx.Call("mul", {probs, mass}));
    ASSIGN_OR_RETURN(slope, ctx.Call("sub", {predicted, weights}));
  } else {
    ASSIGN_OR_RETURN(slope, ctx.Call("neg", {weights}));
  }
  Grads r(2);
  ASSIGN_OR_RETURN(r[0], ctx.Call("mul", {*slope, scale_c}));
  if (ctx.needs_grad(1)) {  // probability targets: d/dt = -logp (1 - eps) s
    ASSIGN_OR_RETURN(const Tensor t_slope,
                     ctx.Call("mul", {logp, Scalar{smoothing.value_or(0.0) - 1.0}}));
    ASSIGN_OR_RETURN(r[1], ctx.Call("mul", {t_slope, scale_c}));
  }
  return r;
}

// ---- binary_cross_entropy_with_logits ---------------------------------------------------
//
// l = (1 - y) x + (1 + (p - 1) y) softplus(-x), softplus(-x) computed as
// log1p(exp(-|x|)) + relu(-x) so that no exp overflows; p = pos_weight.

absl::StatusOr<Tensor> SoftplusOfNegative(const OpContext& ctx, const Tensor& x) {
  ASSIGN_OR_RETURN(const Tensor magnitude, Call(ctx, "abs", {x}));
  ASSIGN_OR_RETURN(const Tensor minus, Call(ctx, "neg", {magnitude}));
  ASSIGN_OR_RETURN(const Tensor e, Call(ctx, "exp", {minus}));
  ASSIGN_OR_RETURN(const Tensor soft, Call(ctx, "log1p", {e}));
  ASSIGN_OR_RETURN(const Tensor neg_x, Call(ctx, "neg", {x}));
  ASSIGN_OR_RETURN(const Tensor hinge, Call(ctx, "relu", {neg_x}));
  return Call(ctx, "add", {soft, hinge});
}

// 1 + (p - 1) y, or nullopt without pos_weight.
absl::StatusOr<std::optional<Tensor>> LogWeight(const OpContext& ctx, const Tensor& y) {
  if (ctx.num_args() < 3) return std::nullopt;
  ASSIGN_OR_RETURN(const Tensor p, ctx.TensorArg(2));
  ASSIGN_OR_RETURN(const Tensor p_minus_1, Call(ctx, "sub", {p, Scalar{int64_t{1}}}));
  ASSIGN_OR_RETURN(const Tensor scaled, Call(ctx, "mul", {p_minus_1, y}));
  return Call(ctx, "add", {scaled, Scalar{int64_t{1}}});
}

absl::StatusOr<Outputs> BceWithLogitsOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(2, 3));
  ASSIGN_OR_RETURN(const Tensor x, ctx.TensorArg(0));
  ASSIGN_OR_RETURN(const Tensor y, ctx.TensorArg(1));
  RETURN_IF_ERROR(RequireFloat(x, "input"));
  if (x.shape() != y.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Target size (", DimsToString(y.shape()), ") must be the same as input size (",
        DimsToString(x.shape()), ")"));
  }
  ASSIGN_OR_RETURN(const Reduction reduction, GetReduction(ctx));
  ASSIGN_OR_RETURN(const Tensor one_minus_y, Call(ctx, "sub", {Scalar{int64_t{1}}, y}));
  ASSIGN_OR_RETURN(const Tensor linear, Call(ctx, "mul", {one_minus_y, x}));
  ASSIGN_OR_RETURN(Tensor soft, SoftplusOfNegative(ctx, x));
  ASSIGN_OR_RETURN(const std::optional<Tensor> weight, LogWeight(ctx, y));
  if (weight) {
    ASSIGN_OR_RETURN(soft, Call(ctx, "mul", {soft, *weight}));
  }
  ASSIGN_OR_RETURN(const Tensor losses, Call(ctx, "add", {linear, soft}));
  ASSIGN_OR_RETURN(Tensor out, Reduce(ctx, losses, reduction));
  return Outputs{std::move(out)};
}

// dl/dx = (1 - y) - w (1 - sigmoid(x)) (= sigmoid(x) - y without pos_weight);
// dl/dy = -x + (p - 1) softplus(-x); dl/dp = y softplus(-x).
absl::StatusOr<Grads> BceWithLogitsBackward(const GradContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& y = ctx.input(1);
  ASSIGN_OR_RETURN(const Tensor g, SpreadGrad(ctx, x.shape(), x.numel()));
  ASSIGN_OR_RETURN(const std::optional<Tensor> weight, LogWeight(ctx.forward(), y));
  Grads r(ctx.num_inputs());
  ASSIGN_OR_RETURN(const Tensor s, ctx.Call("sigmoid", {x}));
  ASSIGN_OR_RETURN(const Tensor one_minus_s, ctx.Call("sub", {Scalar{int64_t{1}}, s}));
  ASSIGN_OR_RETURN(const Tensor one_minus_y, ctx.Call("sub", {Scalar{int64_t{1}}, y}));
  Tensor pull = one_minus_s;
  if (weight) {
    ASSIGN_OR_RETURN(pull, ctx.Call("mul", {one_minus_s, *weight}));
  }
  ASSIGN_OR_RETURN(const Tensor slope, ctx.Call("sub", {one_minus_y, pull}));
  ASSIGN_OR_RETURN(r[0], ctx.Call("mul", {slope, g}));
  if (ctx.needs_grad(1)) {
    ASSIGN_OR_RETURN(Tensor dy, ctx.Call("neg", {x}));
    if (ctx.num_inputs() == 3) {
      ASSIGN_OR_RETURN(const Tensor soft, SoftplusOfNegative(ctx.forward(), x));
      ASSIGN_OR_RETURN(const Tensor p_minus_1, ctx.Call("sub", {ctx.input(2), Scalar{int64_t{1}}}));
      ASSIGN_OR_RETURN(const Tensor extra, ctx.Call("mul", {p_minus_1, soft}));
      ASSIGN_OR_RETURN(dy, ctx.Call("add", {dy, extra}));
    }
    ASSIGN_OR_RETURN(r[1], ctx.Call("mul", {dy, g}));
  }
  if (ctx.num_inputs() == 3 && ctx.needs_grad(2)) {  // dl/dp = y softplus(-x)
    ASSIGN_OR_RETURN(const Tensor soft, SoftplusOfNegative(ctx.forward(), x));
    ASSIGN_OR_RETURN(const Tensor dp, ctx.Call("mul", {y, soft}));
    ASSIGN_OR_RETURN(r[2], ctx.Call("mul", {dp, g}));
  }
  return r;
}

// ---- dropout --------------------------------------------------------------------------
//
// dropout(x, p=0.5, training=true): zeroes each element with probability p
// and scales the rest by 1/(1-p). The mask comes from Rand with the op's
// "seed" attribute (drawn from the session's generator when absent), so the
// backward regenerates it instead of keeping it.

absl::StatusOr<double> DropoutP(const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<double> p, ctx.Double("p"));
  const double value = p.value_or(0.5);
  if (!(value >= 0.0 && value <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout probability has to be between 0 and 1, but got ", value));
  }
  return value;
}

// The multiplier of each element: 0 or 1/(1-p), in `dtype`.
absl::StatusOr<Tensor> DropoutScale(const OpContext& ctx, const Dims& shape, DType dtype, double p) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> seed, ctx.Int("seed"));
  ASSIGN_OR_RETURN(const Tensor u, Rand(shape, static_cast<uint64_t>(seed.value_or(0)),
                                        TensorOptions{DType::kFloat32, Device::Cpu(), ctx.budget()}));
  ASSIGN_OR_RETURN(const Tensor keep, Call(ctx, "ge", {u, Scalar{p}}));
  // The scale as a 0-d tensor of the input's dtype, so that it is not
  // rounded to float32 (where() with two numbers would give float32).
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  ASSIGN_OR_RETURN(const Tensor kept_scale,
                   Full(Dims{}, Scalar{scale}, TensorOptions{dtype, Device::Cpu(), ctx.budget()}));
  return Call(ctx, "where", {keep, kept_scale, Scalar{int64_t{0}}});
}

absl::StatusOr<Outputs> DropoutOp(const OpContext& ctx) {
  RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
  ASSIGN_OR_RETURN(const Tensor x, ctx.TensorArg(0));
  RETURN_IF_ERROR(RequireFloat(x, "input"));
  ASSIGN_OR_RETURN(const double p, DropoutP(ctx));
  ASSIGN_OR_RETURN(const bool training, ctx.Bool("training", true));
  if (!training || p == 0.0) return Outputs{x};  // the input itself, as in torch: no copy
  ASSIGN_OR_RETURN(const Tensor factor, DropoutScale(ctx, x.shape(), x.dtype(), p));
  ASSIGN_OR_RETURN(Tensor out, Call(ctx, "mul", {x, factor}));
  return Outputs{std::move(out)};
}

absl::StatusOr<Grads> DropoutBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const double p, DropoutP(ctx.forward()));
  ASSIGN_OR_RETURN(const bool training, ctx.forward().Bool("training", true));
  if (!training || p == 0.0) return Grads{ctx.grad()};
  ASSIGN_OR_RETURN(const Tensor factor,
                   DropoutScale(ctx.forward(), ctx.info(0).shape, ctx.info(0).dtype, p));
  ASSIGN_OR_RETURN(Tensor g, ctx.Call("mul", {ctx.grad(), factor}));
  return Grads{std::move(g)};
}

}  // namespace

void AddNnOps(OpTable& table) {
  table.insert({
      {"linear", {LinearOp, LinearBackward, kSavesInputs}},
      {"mse_loss", {PointwiseLossOp<true>, PointwiseLossBackward<true>, kSavesInputs}},
      {"l1_loss", {PointwiseLossOp<false>, PointwiseLossBackward<false>, kSavesInputs}},
      {"nll_loss", {ClassLossOp<false>, ClassLossBackward<false>, kSavesInputs}},
      {"cross_entropy", {ClassLossOp<true>, ClassLossBackward<true>, kSavesInputs}},
      {"binary_cross_entropy_with_logits",
       {BceWithLogitsOp, BceWithLogitsBackward, kSavesInputs}},
      {"dropout", {DropoutOp, DropoutBackward, kRandom}},
  });
}

}  // namespace tensord
