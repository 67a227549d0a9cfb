#include "optim/param_optimizer.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"

namespace tensord {

absl::StatusOr<std::shared_ptr<ParamOptimizer>> ParamOptimizer::Make(
    OptimizerKind kind, std::vector<std::vector<Variable>> groups,
    std::vector<OptimizerOptions> options, std::shared_ptr<MemoryBudget> budget) {
  if (groups.size() != options.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        groups.size(), " parameter groups but ", options.size(), " sets of options"));
  }
  std::vector<Variable> params;
  std::vector<int> param_groups;
  absl::flat_hash_set<const AutogradMeta*> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (Variable& param : groups[g]) {
      if (!param.requires_grad()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter ", params.size(), " does not require grad: optimizers update tensors "
            "that require grad (call requires_grad_() or use nn.Parameter)"));
      }
      if (!param.autograd->is_leaf()) {
        return absl::InvalidArgumentError(
            absl::StrCat("can't optimize a non-leaf Tensor (parameter ", params.size(), ")"));
      }
      if (!seen.insert(param.autograd.get()).second) {
        return absl::InvalidArgumentError(
            "some parameters appear in more than one parameter group");
      }
      params.push_back(std::move(param));
      param_groups.push_back(static_cast<int>(g));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer,
                   Optimizer::Make(kind, std::move(options), std::move(param_groups),
                                   std::move(budget)));
  return std::shared_ptr<ParamOptimizer>(
      new ParamOptimizer(std::move(optimizer), std::move(params)));
}

absl::Status ParamOptimizer::Step(std::vector<OptimizerOptions> options) {
  absl::MutexLock lock(&mu_);
  // New options apply to this step only if the step happens: a refused step
  // leaves the optimizer as it was.
  std::vector<OptimizerOptions> previous;
  for (int64_t g = 0; g < optimizer_->num_groups(); ++g) {
    previous.push_back(optimizer_->group_options(g));
  }
  if (!options.empty()) RETURN_IF_ERROR(optimizer_->SetGroupOptions(std::move(options)));
  std::vector<Tensor> tensors;
  std::vector<std::optional<Tensor>> grads;
  for (const Variable& param : params_) {
    tensors.push_back(param.tensor);
    absl::MutexLock grad_lock(&param.autograd->mu);
    grads.push_back(param.autograd->grad);
  }
  if (absl::Status status = optimizer_->Step(tensors, grads); !status.ok()) {
    optimizer_->SetGroupOptions(std::move(previous)).IgnoreError();  // they were valid
    return status;
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (grads[i]) params_[i].tensor.storage()->BumpVersion();
  }
  return absl::OkStatus();
}

absl::Status ParamOptimizer::ZeroGrad(bool set_to_none) {
  absl::MutexLock lock(&mu_);
  return ZeroGrads(params_, set_to_none);
}

int64_t ParamOptimizer::state_bytes() const {
  absl::MutexLock lock(&mu_);
  return optimizer_->state_bytes();
}

absl::Status ZeroGrads(const std::vector<Variable>& variables, bool set_to_none) {
  for (const Variable& variable : variables) {
    if (variable.autograd == nullptr) continue;
    absl::MutexLock lock(&variable.autograd->mu);
    std::optional<Tensor>& grad = variable.autograd->grad;
    if (!grad) continue;
    if (set_to_none) {
      grad.reset();
    } else {
      RETURN_IF_ERROR(PrepareWrite(*grad, "zero_grad: a gradient"));
      Fill(*grad, Scalar{int64_t{0}});
      grad->storage()->BumpVersion();
    }
  }
  return absl::OkStatus();
}

}  // namespace tensord
