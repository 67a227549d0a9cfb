// The autograd graph: nodes, the edges between them, and the autograd state
// of a tensor handle.
//
// A recorded op becomes an OpNode: its name ("MulBackward0"), the forward's
// attributes and whatever the op said it saves (inputs, outputs), one
// InputInfo per argument, and one Edge per argument pointing at the node
// that receives that argument's gradient: the grad_fn of a non-leaf, the
// GradAccumulator of a leaf that requires grad, or nothing. Gradients flow
// along the edges (autograd/engine.h); a GradAccumulator adds what reaches
// it into its leaf's `grad`.
//
// Ownership: outputs hold their grad_fn (shared), nodes hold the nodes they
// point to (shared), so a graph lives exactly as long as some handle can
// still reach it. A GradAccumulator holds its leaf's AutogradMeta; the meta
// holds its accumulator only weakly, so there is no cycle. A graph is
// released iteratively (~Node), never by recursion: a chain of a million
// nodes (a loss summed over an epoch without detach()) is freed in constant
// stack.
//
// Thread-safety: AutogradMeta and Node guard their mutable state with their
// own mutex; the graph's shape never changes after recording. No code holds
// two of these mutexes at once, except ParamOptimizer (its own, then a
// parameter's AutogradMeta).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/tensor.h"
#include "ops/op.h"

namespace tensord {

class Node;
struct AutogradMeta;

struct Edge {
  std::shared_ptr<Node> node;  // null: the argument needs no gradient
  int input_nr = 0;            // which of `node`'s outputs this gradient belongs to
};

class Node {
 public:
  explicit Node(std::string name, std::vector<Edge> next)
      : name_(std::move(name)), next_(std::move(next)) {}
  // Releases the nodes that only this one holds, and theirs, from a work
  // list rather than through nested destructors (PyTorch's deleteNode).
  virtual ~Node();

  const std::string& name() const { return name_; }
  const std::vector<Edge>& next() const { return next_; }
  virtual int num_outputs() const = 0;

  // Given the gradient of each output (nullopt where none arrived), returns
  // one gradient per edge, already cast and summed to the argument's dtype
  // and shape. Without `retain_graph` the node drops what it saved.
  virtual absl::StatusOr<std::vector<std::optional<Tensor>>> Apply(
      std::vector<std::optional<Tensor>> grads, bool retain_graph) = 0;

  // Non-leaf outputs whose gradient the client asked to keep (retain_grad).
  void RetainGrad(int output_nr, std::weak_ptr<AutogradMeta> meta);
  // Adds each retained output's incoming gradient to its tensor's grad.
  absl::Status CaptureRetained(const std::vector<std::optional<Tensor>>& grads);

 private:
  const std::string name_;
  std::vector<Edge> next_;  // fixed after construction; emptied only by ~Node
  absl::Mutex retained_mu_;
  std::vector<std::pair<int, std::weak_ptr<AutogradMeta>>> retained_ ABSL_GUARDED_BY(retained_mu_);
};

// The autograd state of one handle. Absent (null) for tensors that never
// required grad, as PyTorch leaves autograd_meta null.
struct AutogradMeta {
  AutogradMeta(bool requires_grad, std::shared_ptr<Node> grad_fn, int output_nr)
      : requires_grad(requires_grad), grad_fn(std::move(grad_fn)), output_nr(output_nr) {}

  bool is_leaf() const { return grad_fn == nullptr; }

  // Changes only for leaves (SetRequiresGrad), hence atomic rather than locked.
  std::atomic<bool> requires_grad;
  const std::shared_ptr<Node> grad_fn;  // null for leaves
  const int output_nr;                  // which output of grad_fn this is

  absl::Mutex mu;
  // The accumulated gradient (leaves, and non-leaves that retain it).
  std::optional<Tensor> grad ABSL_GUARDED_BY(mu);
  bool retains_grad ABSL_GUARDED_BY(mu) = false;
  // A leaf's accumulator node, shared by every op that used the leaf while
  // its graph lives.
  std::weak_ptr<Node> accumulator ABSL_GUARDED_BY(mu);
};

// A tensor with its autograd state, as a session stores it under a handle.
struct Variable {
  Tensor tensor;
  std::shared_ptr<AutogradMeta> autograd;  // null: does not require grad

  bool requires_grad() const { return autograd != nullptr && autograd->requires_grad; }
};

// Whether tensors of `dtype` may require grad (floating-point dtypes).
bool SupportsGrad(DType dtype);

// "only Tensors of floating point dtype can require gradients (got int64)".
absl::Status CheckSupportsGrad(DType dtype);

// Adds `incoming` to `meta`'s grad: the first gradient is kept (copied
// unless nothing else can reach it), later ones are added in place.
absl::Status AccumulateInto(AutogradMeta& meta, Tensor incoming);

// The node that receives the gradient of `variable`: its grad_fn, or (for
// a leaf that requires grad) its accumulator, created on first use.
Edge GradientEdge(const Variable& variable);

// What each recorded op's node is charged to its session's budget: its own
// bookkeeping (edges, input descriptions, saved attributes; 410 to 590
// resident bytes measured for a binary op), beside the tensors it saves, which are charged
// as storage. So a graph kept growing for a million steps without detach()
// meets --max-memory instead of outgrowing it.
inline constexpr int64_t kNodeBytes = 768;

// The backward node of a recorded op. The recorder charges kNodeBytes to
// `saved`'s budget before making one; the node returns them when destroyed.
class OpNode final : public Node {
 public:
  OpNode(std::string name, std::vector<Edge> next, const OpDef* def, OpContext saved,
         std::vector<InputInfo> inputs, std::vector<Tensor> saved_outputs, int num_outputs);
  ~OpNode() override;

  int num_outputs() const override { return num_outputs_; }
  absl::StatusOr<std::vector<std::optional<Tensor>>> Apply(
      std::vector<std::optional<Tensor>> grads, bool retain_graph) override;

 private:
  // Each saved tensor with the version of its storage when it was saved.
  absl::Status CheckVersions() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const OpDef* const def_;
  const std::shared_ptr<MemoryBudget> charged_;  // holds kNodeBytes of it
  const std::vector<InputInfo> inputs_;
  const int num_outputs_;
  absl::Mutex mu_;
  OpContext saved_ ABSL_GUARDED_BY(mu_);
  std::vector<Tensor> saved_outputs_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> versions_ ABSL_GUARDED_BY(mu_);
  const bool saves_tensors_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// A leaf's sink: adds the gradient that reaches it into the leaf's grad.
class GradAccumulator final : public Node {
 public:
  explicit GradAccumulator(std::shared_ptr<AutogradMeta> leaf)
      : Node("AccumulateGrad", {}), leaf_(std::move(leaf)) {}

  int num_outputs() const override { return 1; }
  absl::StatusOr<std::vector<std::optional<Tensor>>> Apply(
      std::vector<std::optional<Tensor>> grads, bool retain_graph) override;

 private:
  const std::shared_ptr<AutogradMeta> leaf_;
};

}  // namespace tensord
