#include "autograd/recorder.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tensord {

std::string BackwardName(absl::string_view op) {
  std::string name;
  bool upper = true;
  for (char c : op) {
    if (c == '_') {
      upper = true;
      continue;
    }
    name.push_back(upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c);
    upper = false;
  }
  return absl::StrCat(name, "Backward0");
}

absl::StatusOr<std::vector<Variable>> RunRecorded(
    const OpContext& context, absl::Span<const std::shared_ptr<AutogradMeta>> arg_autograd,
    bool grad_enabled, const std::function<uint64_t()>& next_seed) {
  ASSIGN_OR_RETURN(const OpDef* def, FindOp(context.op()));
  const bool any_requires_grad =
      std::any_of(arg_autograd.begin(), arg_autograd.end(),
                  [](const std::shared_ptr<AutogradMeta>& m) { return m && m->requires_grad; });

  if (def->traits & kInPlace) {
    if (grad_enabled && any_requires_grad) {
      const std::shared_ptr<AutogradMeta>& target = arg_autograd.empty() ? nullptr : arg_autograd[0];
      if (target && target->requires_grad && target->is_leaf()) {
        return absl::FailedPreconditionError(absl::StrCat(
            context.op(), ": a leaf Variable that requires grad is being used in an in-place "
            "operation; wrap it in `with td.no_grad():`"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          context.op(), ": in-place ops on tensors that take part in autograd are only "
          "allowed under `td.no_grad()`; use the out-of-place op"));
    }
    RETURN_IF_ERROR(RunOp(context).status());
    if (context.num_args() > 0) {
      if (const Tensor* target = std::get_if<Tensor>(&context.arg(0))) {
        target->storage()->BumpVersion();
      }
    }
    return std::vector<Variable>{};
  }

  const bool draw_seed = (def->traits & kRandom) && !context.attrs().contains("seed");
  const OpContext seeded =
      draw_seed ? context.WithAttr("seed", static_cast<int64_t>(next_seed())) : context;
  ASSIGN_OR_RETURN(std::vector<Tensor> outputs, RunOp(seeded));

  std::vector<Variable> results;
  results.reserve(outputs.size());
  if (!grad_enabled || !any_requires_grad || def->backward == nullptr) {
    for (Tensor& t : outputs) results.push_back(Variable{std::move(t), nullptr});
    return results;
  }
  std::vector<Edge> edges;
  std::vector<InputInfo> inputs;
  for (size_t i = 0; i < seeded.num_args(); ++i) {
    if (const Tensor* t = std::get_if<Tensor>(&seeded.arg(i))) {
      inputs.push_back(InputInfo{true, t->dtype(), t->shape()});
      edges.push_back(GradientEdge(Variable{*t, arg_autograd[i]}));
    } else {
      inputs.push_back(InputInfo{});
      edges.push_back(Edge{});
    }
  }
  // The node's own memory is charged like a tensor's (see kNodeBytes); the
  // charge is returned when the node is destroyed.
  if (seeded.budget() != nullptr) {
    RETURN_IF_ERROR(seeded.budget()->Reserve(kNodeBytes, "an autograd graph node"));
  }
  auto node = std::make_shared<OpNode>(
      BackwardName(seeded.op()), std::move(edges), def,
      (def->traits & kSavesInputs)        ? seeded
      : (def->traits & kSavesIndexInputs) ? seeded.WithIndexArgsOnly()
                                          : seeded.WithoutArgs(),
      std::move(inputs),
      (def->traits & kSavesOutputs) ? outputs : std::vector<Tensor>{},
      static_cast<int>(outputs.size()));
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::shared_ptr<AutogradMeta> meta;
    if (SupportsGrad(outputs[i].dtype())) {
      meta = std::make_shared<AutogradMeta>(true, node, static_cast<int>(i));
    }
    results.push_back(Variable{std::move(outputs[i]), std::move(meta)});
  }
  return results;
}

}  // namespace tensord
