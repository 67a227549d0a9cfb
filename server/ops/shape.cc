// Views and copies as ops, each with its backward beside it: the View and
// Copy RPCs run these through the autograd recorder, so `x.T`, `x[1:]` or
// `x.float()` on a tensor that requires grad joins the graph like any op.
//
// A view's backward maps the output gradient back onto the input's shape:
// the inverse permutation for transpose/permute, a reshape for the
// shape-only views, nothing at all for expand (the engine sums broadcast
// dims away), and a scatter into zeros for select.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/create.h"
#include "core/views.h"
#include "ops/op.h"

namespace tensord {
namespace {

using Grads = std::vector<std::optional<Tensor>>;
using Outputs = std::vector<Tensor>;

absl::StatusOr<int64_t> RequiredInt(const OpContext& ctx, const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, ctx.Int(name));
  if (!value) return absl::InvalidArgumentError(absl::StrCat("missing attribute '", name, "'"));
  return *value;
}

absl::StatusOr<Dims> RequiredDims(const OpContext& ctx, const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<Dims> value, ctx.Dims_(name));
  if (!value) return absl::InvalidArgumentError(absl::StrCat("missing attribute '", name, "'"));
  return *value;
}

// Wraps a one-input view function as an op.
template <typename F>
OpFunction UnaryView(F view) {
  return [view](const OpContext& ctx) -> absl::StatusOr<Outputs> {
    RETURN_IF_ERROR(ctx.ExpectArgs(1, 1));
    ASSIGN_OR_RETURN(const Tensor x, ctx.TensorArg(0));
    ASSIGN_OR_RETURN(Tensor out, view(x, ctx));
    return Outputs{std::move(out)};
  };
}

// ---- transpose / permute: the inverse permutation -------------------------------

absl::StatusOr<Tensor> TransposeForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim0, RequiredInt(ctx, "dim0"));
  ASSIGN_OR_RETURN(const int64_t dim1, RequiredInt(ctx, "dim1"));
  return Transpose(x, dim0, dim1);
}
absl::StatusOr<Grads> TransposeBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim0, RequiredInt(ctx.forward(), "dim0"));
  ASSIGN_OR_RETURN(const int64_t dim1, RequiredInt(ctx.forward(), "dim1"));
  ASSIGN_OR_RETURN(Tensor g, Transpose(ctx.grad(), dim0, dim1));
  return Grads{std::move(g)};
}

absl::StatusOr<Tensor> PermuteForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const Dims dims, RequiredDims(ctx, "dims"));
  return Permute(x, dims);
}
absl::StatusOr<Grads> PermuteBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(const Dims dims, RequiredDims(ctx.forward(), "dims"));
  const int64_t ndim = static_cast<int64_t>(dims.size());
  Dims inverse(dims.size());
  for (int64_t i = 0; i < ndim; ++i) {
    ASSIGN_OR_RETURN(const int64_t d, WrapDim(dims[i], ndim));
    inverse[d] = i;
  }
  ASSIGN_OR_RETURN(Tensor g, Permute(ctx.grad(), inverse));
  return Grads{std::move(g)};
}

// ---- shape-only views: reshape the gradient back --------------------------------

absl::StatusOr<Tensor> ViewForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const Dims shape, RequiredDims(ctx, "shape"));
  return View(x, shape);
}
absl::StatusOr<Tensor> ReshapeForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const Dims shape, RequiredDims(ctx, "shape"));
  return Reshape(x, shape);
}
absl::StatusOr<Tensor> FlattenForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<int64_t> start, ctx.Int("start_dim"));
  ASSIGN_OR_RETURN(const std::optional<int64_t> end, ctx.Int("end_dim"));
  return Flatten(x, start.value_or(0), end.value_or(-1));
}
absl::StatusOr<Tensor> SqueezeForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<Dims> dims, ctx.Dims_("dims"));
  return Squeeze(x, dims.value_or(Dims{}));
}
absl::StatusOr<Tensor> UnsqueezeForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim, RequiredInt(ctx, "dim"));
  return Unsqueeze(x, dim);
}
absl::StatusOr<Grads> ReshapeBackward(const GradContext& ctx) {
  ASSIGN_OR_RETURN(Tensor g, Reshape(ctx.grad(), ctx.info(0).shape));
  return Grads{std::move(g)};
}

// ---- expand: the engine sums the broadcast dims of the gradient ------------------

absl::StatusOr<Tensor> ExpandForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const Dims shape, RequiredDims(ctx, "shape"));
  return Expand(x, shape);
}
absl::StatusOr<Grads> PassThroughBackward(const GradContext& ctx) { return Grads{ctx.grad()}; }

// ---- select: scatter the gradient into zeros of the input's shape ----------------
// (`index`, which may also take tensors, lives in ops/index.cc.)

absl::StatusOr<Tensor> SelectForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const int64_t dim, RequiredInt(ctx, "dim"));
  ASSIGN_OR_RETURN(const int64_t index, RequiredInt(ctx, "index"));
  return Select(x, dim, index);
}
// The same view of a zero tensor shaped like the input receives the
// gradient; these views never repeat an element, so a copy is a scatter.
template <absl::StatusOr<Tensor> (*kForward)(const Tensor&, const OpContext&)>
absl::StatusOr<Grads> ScatterBackward(const GradContext& ctx) {
  const Tensor& g = ctx.grad();
  ASSIGN_OR_RETURN(Tensor zeros, Full(ctx.info(0).shape, Scalar{int64_t{0}},
                                      TensorOptions{g.dtype(), g.device(), ctx.budget()}));
  ASSIGN_OR_RETURN(const Tensor window, kForward(zeros, ctx.forward()));
  RETURN_IF_ERROR(CopyInto(g, window));
  return Grads{std::move(zeros)};
}

// ---- copies: the gradient passes through (the engine casts it back) --------------

absl::StatusOr<Tensor> ContiguousForward(const Tensor& x, const OpContext&) {
  return Contiguous(x);
}
absl::StatusOr<Tensor> CloneForward(const Tensor& x, const OpContext&) { return Clone(x); }
absl::StatusOr<Tensor> ToForward(const Tensor& x, const OpContext& ctx) {
  ASSIGN_OR_RETURN(const std::optional<DType> dtype, ctx.DTypeAttr("dtype"));
  if (!dtype) return absl::InvalidArgumentError("missing attribute 'dtype'");
  return Cast(x, *dtype);
}

}  // namespace

void AddShapeOps(OpTable& table) {
  table.insert({
      {"transpose", {UnaryView(TransposeForward), TransposeBackward}},
      {"permute", {UnaryView(PermuteForward), PermuteBackward}},
      {"view", {UnaryView(ViewForward), ReshapeBackward}},
      {"reshape", {UnaryView(ReshapeForward), ReshapeBackward}},
      {"flatten", {UnaryView(FlattenForward), ReshapeBackward}},
      {"squeeze", {UnaryView(SqueezeForward), ReshapeBackward}},
      {"unsqueeze", {UnaryView(UnsqueezeForward), ReshapeBackward}},
      {"expand", {UnaryView(ExpandForward), PassThroughBackward}},
      {"select", {UnaryView(SelectForward), ScatterBackward<SelectForward>}},
      {"contiguous", {UnaryView(ContiguousForward), PassThroughBackward}},
      {"clone", {UnaryView(CloneForward), PassThroughBackward}},
      {"to", {UnaryView(ToForward), PassThroughBackward}},
  });
}

}  // namespace tensord
