// PyTorch's rules for changing a tensor's autograd state directly (what
// torch enforces on `requires_grad_`, `retain_grad`, and `.grad = ...`),
// stated once for every caller: session commands, later training jobs.
//
// Thread-safety: reentrant; each function takes the AutogradMeta's mutex
// where it touches guarded state.
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/node.h"

namespace tensord {

// What `requires_grad_(requires_grad)` does to `variable`: InvalidArgument
// when turning it on for a dtype that cannot require grad, FailedPrecondition
// when turning it off on a non-leaf. Returns true when the flag of a leaf is
// to be set (the caller gives the leaf autograd state first if it has none),
// false when nothing changes (a non-leaf already requires grad).
absl::StatusOr<bool> CheckRequiresGradChange(const Variable& variable, bool requires_grad);

// Makes a non-leaf keep its gradient in `grad` during backward passes
// (leaves keep theirs anyway). FailedPrecondition unless it requires grad.
absl::Status RetainGrad(const std::shared_ptr<AutogradMeta>& autograd);

// InvalidArgument unless `grad` may become the grad of `target` (same
// shape and dtype), with torch's message.
absl::Status CheckGradAssignment(const Tensor& target, const Tensor& grad);

// The accumulated gradient (leaves, retained non-leaves), if any. The
// tensor shares its storage with the grad: later accumulation, which is in
// place, shows through it, as with torch's `.grad`.
std::optional<Tensor> CurrentGrad(const Variable& variable);

// Replaces the gradient (nullopt: None). REQUIRES: autograd != null.
void AssignGrad(AutogradMeta& autograd, std::optional<Tensor> grad);

}  // namespace tensord
