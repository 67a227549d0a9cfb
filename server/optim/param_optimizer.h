// An optimizer bound to its parameters, as a session keeps it: the
// Optimizer (optim/optimizer.h) holds the update rules and state; this
// holds the parameters' handles' autograd state, reads their grads at each
// step, bumps their versions (a graph that saved a parameter before the step
// can no longer backward through it), and clears grads for zero_grad.
//
// Thread-safety: thread-safe; steps and zero_grads of one optimizer are
// serialised.
#pragma once

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "autograd/node.h"
#include "optim/optimizer.h"

namespace tensord {

class ParamOptimizer {
 public:
  // `groups[g]` lists the parameters of group g, `options[g]` its options.
  // Every parameter must be a leaf that requires grad and appear once.
  static absl::StatusOr<std::shared_ptr<ParamOptimizer>> Make(
      OptimizerKind kind, std::vector<std::vector<Variable>> groups,
      std::vector<OptimizerOptions> options, std::shared_ptr<MemoryBudget> budget);

  // One step of every parameter that has a grad; `options`, when not empty,
  // first replaces each group's options (one per group).
  absl::Status Step(std::vector<OptimizerOptions> options);
  // Clears every parameter's grad.
  absl::Status ZeroGrad(bool set_to_none);

  int64_t state_bytes() const;

 private:
  ParamOptimizer(std::unique_ptr<Optimizer> optimizer, std::vector<Variable> params)
      : optimizer_(std::move(optimizer)), params_(std::move(params)) {}

  mutable absl::Mutex mu_;
  const std::unique_ptr<Optimizer> optimizer_ ABSL_PT_GUARDED_BY(mu_);
  const std::vector<Variable> params_;
};

// Sets the grads of `variables` to None, or fills them with zeros in place.
absl::Status ZeroGrads(const std::vector<Variable>& variables, bool set_to_none);

}  // namespace tensord
