#include "autograd/handle_rules.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tensord {

absl::StatusOr<bool> CheckRequiresGradChange(const Variable& variable, bool requires_grad) {
  if (requires_grad) RETURN_IF_ERROR(CheckSupportsGrad(variable.tensor.dtype()));
  if (variable.autograd != nullptr && !variable.autograd->is_leaf()) {
    if (!requires_grad) {
      return absl::FailedPreconditionError(
          "you can only change requires_grad flags of leaf variables. If you want to use a "
          "computed variable in a subgraph that doesn't require differentiation use "
          "var_no_grad = var.detach()");
    }
    return false;  // a non-leaf that requires grad already
  }
  return true;
}

absl::Status RetainGrad(const std::shared_ptr<AutogradMeta>& autograd) {
  if (autograd == nullptr || !autograd->requires_grad) {
    return absl::FailedPreconditionError(
        "can't retain_grad on Tensor that has requires_grad=False");
  }
  if (autograd->is_leaf()) return absl::OkStatus();  // leaves keep their grad anyway
  bool first = false;
  {
    absl::MutexLock lock(&autograd->mu);
    first = !autograd->retains_grad;
    autograd->retains_grad = true;
  }
  if (first) autograd->grad_fn->RetainGrad(autograd->output_nr, autograd);
  return absl::OkStatus();
}

absl::Status CheckGradAssignment(const Tensor& target, const Tensor& grad) {
  if (grad.shape() != target.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assigned grad has data of a different size: ", DimsToString(grad.shape()),
        " for a tensor of shape ", DimsToString(target.shape())));
  }
  if (grad.dtype() != target.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "assigned grad has data of a different type: ", DTypeName(grad.dtype()),
        " for a tensor of dtype ", DTypeName(target.dtype())));
  }
  return absl::OkStatus();
}

std::optional<Tensor> CurrentGrad(const Variable& variable) {
  if (variable.autograd == nullptr) return std::nullopt;
  absl::MutexLock lock(&variable.autograd->mu);
  return variable.autograd->grad;
}

void AssignGrad(AutogradMeta& autograd, std::optional<Tensor> grad) {
  absl::MutexLock lock(&autograd.mu);
  autograd.grad = std::move(grad);
}

}  // namespace tensord
