// Server-side optimizers with torch.optim semantics: SGD, Adam and AdamW
// updating parameters in place from their gradients, with per-parameter
// state (momentum buffers, moment estimates) kept here between steps.
//
// The update rules are those of torch.optim's single-tensor path in PyTorch
// 2.x (foreach=False, capturable=False, differentiable=False); the
// per-element math lives in optim/update_rules.h so that CUDA kernels can
// share it. Parameter groups work as in torch: each parameter belongs to one
// group, and each group has its own options.
//
// Thread-safety: an Optimizer is not thread-safe. The caller serialises every
// call on one instance and must not let another thread read or write the
// parameters, gradients or state while Step runs.
//
// Invariants:
// - group_options_ holds one validated entry per group; every entry of
//   param_groups_ indexes it.
// - A parameter's state tensors, once allocated, are C-contiguous, have the
//   shape and dtype the parameter had at its first step, and are charged to
//   budget_ for as long as the Optimizer lives; Step rejects a parameter whose
//   shape or dtype no longer matches them.
// - Step changes nothing (parameters, state, step counts) when it returns an
//   error.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace tensord {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

// Hyper-parameters of one parameter group. Fields that the kind does not use
// are ignored (and not validated).
struct OptimizerOptions {
  double lr = 1e-3;
  // SGD.
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  // SGD and Adam: L2 penalty added to the gradient. AdamW: decoupled decay,
  // p *= 1 - lr * weight_decay before the Adam update.
  double weight_decay = 0;
  // Adam and AdamW.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool amsgrad = false;
  // All kinds: ascend the objective instead of descending it.
  bool maximize = false;
};

// InvalidArgument with torch.optim's message for the first bad option, checked
// in torch's order ("Invalid learning rate: -1", "Invalid beta parameter at
// index 0: 1.5", "Nesterov momentum requires a momentum and zero dampening",
// ...). Unlike torch, NaN and infinite values are rejected too.
absl::Status ValidateOptions(OptimizerKind kind, const OptimizerOptions& options);

// "SGD", "Adam", "AdamW": torch.optim's class names.
absl::string_view OptimizerKindName(OptimizerKind kind);

class Optimizer {
 public:
  // `group_options` holds one entry per group (at least one), each validated;
  // `param_groups[i]` is the group of parameter i (at least one parameter, as
  // torch requires). State is charged to `budget` (not null).
  static absl::StatusOr<std::unique_ptr<Optimizer>> Make(
      OptimizerKind kind, std::vector<OptimizerOptions> group_options,
      std::vector<int> param_groups, std::shared_ptr<MemoryBudget> budget);

  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Replaces the options of every group (torch's `param_groups[i][...] = ...`,
  // e.g. for an LR schedule). The count must match and each entry must be
  // valid; nothing changes on error. State is kept: a momentum buffer or
  // max_exp_avg_sq first needed after the change is created at that step.
  absl::Status SetGroupOptions(std::vector<OptimizerOptions> group_options);

  // One optimizer step: updates params[i] in place from grads[i]. Parameters
  // whose grad is nullopt are skipped, and their step count does not advance
  // (as in PyTorch).
  //
  // InvalidArgument (naming the parameter index) unless params.size() ==
  // grads.size() == num_params(), and, for every parameter with a grad: the
  // param is a CPU tensor of a floating dtype (float16, bfloat16, float32,
  // float64) whose elements do not overlap each other, the grad has the same
  // shape and dtype and lives on the same device, and existing state still
  // matches the param's shape and dtype.
  //
  // Params and grads may have any strides: the parameter is updated through
  // its own strides, so no contiguous temporary is needed. Missing state is
  // allocated (zero-filled) for every parameter before any parameter is
  // touched, so a ResourceExhausted from the budget leaves params and state
  // unchanged.
  //
  // REQUIRES: no parameter shares memory with another parameter, a state
  // tensor, or a gradient other than element for element (torch requires the
  // same of its parameters).
  absl::Status Step(absl::Span<const Tensor> params,
                    absl::Span<const std::optional<Tensor>> grads);

  OptimizerKind kind() const { return kind_; }
  int64_t num_params() const { return static_cast<int64_t>(param_groups_.size()); }
  int64_t num_groups() const { return static_cast<int64_t>(group_options_.size()); }
  const OptimizerOptions& group_options(int64_t group) const { return group_options_[group]; }
  // Steps taken by parameter `param` (torch's state["step"]; SGD counts too).
  // REQUIRES: 0 <= param < num_params().
  int64_t step_count(int64_t param) const { return states_[param].step; }
  // Bytes of all state tensors held.
  int64_t state_bytes() const;

 private:
  // torch's per-parameter `state` dict. A slot is empty until its first use.
  struct ParamState {
    int64_t step = 0;
    std::optional<Tensor> momentum_buffer;  // SGD with momentum
    std::optional<Tensor> exp_avg;          // Adam, AdamW
    std::optional<Tensor> exp_avg_sq;
    std::optional<Tensor> max_exp_avg_sq;   // amsgrad
  };

  Optimizer(OptimizerKind kind, std::vector<OptimizerOptions> group_options,
            std::vector<int> param_groups, std::shared_ptr<MemoryBudget> budget);

  absl::Status CheckParam(int64_t index, const Tensor& param, const Tensor& grad) const;
  // Allocates the slots this step needs that `state` lacks into `fresh`.
  absl::Status AllocateMissingState(int64_t index, const Tensor& param,
                                    const ParamState& state, ParamState& fresh) const;
  void Update(const Tensor& param, const Tensor& grad, ParamState& state,
              const OptimizerOptions& options, bool momentum_buffer_is_new) const;

  const OptimizerKind kind_;
  std::vector<OptimizerOptions> group_options_;
  const std::vector<int> param_groups_;
  const std::shared_ptr<MemoryBudget> budget_;
  std::vector<ParamState> states_;  // one per parameter
};

}  // namespace tensord
