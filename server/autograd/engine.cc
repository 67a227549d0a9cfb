#include "autograd/engine.h"

#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/create.h"

namespace tensord {
namespace {

using GradBuffer = std::vector<std::optional<Tensor>>;

// Adds `grad` into slot `input_nr` of `node`'s buffer.
absl::Status AddToBuffer(absl::flat_hash_map<Node*, GradBuffer>& buffers, Node* node,
                         int input_nr, Tensor grad,
                         const std::shared_ptr<MemoryBudget>& budget) {
  GradBuffer& buffer = buffers[node];
  if (buffer.empty()) buffer.resize(node->num_outputs());
  std::optional<Tensor>& slot = buffer[input_nr];
  if (!slot) {
    slot = std::move(grad);
  } else {
    ASSIGN_OR_RETURN(slot, CallOp("add", {*slot, grad}, budget));
  }
  return absl::OkStatus();
}

// The gradient a root starts with: the given one (checked and cast to the
// root's dtype) or ones for a one-element root.
absl::StatusOr<Tensor> RootGradient(const BackwardRoot& root, size_t index,
                                    const std::shared_ptr<MemoryBudget>& budget) {
  const Tensor& out = root.variable.tensor;
  if (!root.grad) {
    if (out.numel() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "grad can be implicitly created only for scalar outputs, but tensor ", index,
          " has shape ", DimsToString(out.shape()), ": pass a gradient of that shape"));
    }
    return Full(out.shape(), Scalar{int64_t{1}},
                TensorOptions{out.dtype(), out.device(), budget});
  }
  const Tensor& grad = *root.grad;
  if (!std::equal(grad.shape().begin(), grad.shape().end(), out.shape().begin(),
                  out.shape().end())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mismatch in shape: grad_output[", index, "] has a shape of ",
        DimsToString(grad.shape()), " and output[", index, "] has a shape of ",
        DimsToString(out.shape())));
  }
  if (!IsFloatingPoint(grad.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grad_output[", index, "] must be a floating-point tensor, not ", DTypeName(grad.dtype())));
  }
  return Cast(grad, out.dtype());
}

}  // namespace

absl::Status Backward(std::vector<BackwardRoot> roots, bool retain_graph,
                      const std::shared_ptr<MemoryBudget>& budget) {
  if (roots.empty()) return absl::InvalidArgumentError("backward needs at least one tensor");
  absl::flat_hash_map<Node*, GradBuffer> buffers;
  std::vector<std::shared_ptr<Node>> starts;
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].variable.requires_grad()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "element ", i, " of tensors does not require grad and does not have a grad_fn"));
    }
    ASSIGN_OR_RETURN(Tensor grad, RootGradient(roots[i], i, budget));
    const Edge edge = GradientEdge(roots[i].variable);
    RETURN_IF_ERROR(AddToBuffer(buffers, edge.node.get(), edge.input_nr, std::move(grad), budget));
    starts.push_back(edge.node);
  }

  // Dependency counts: how many edges of the reachable graph enter each node.
  absl::flat_hash_map<Node*, int> dependencies;
  {
    std::vector<Node*> stack;
    absl::flat_hash_set<Node*> seen;
    for (const auto& node : starts) {
      if (seen.insert(node.get()).second) stack.push_back(node.get());
    }
    while (!stack.empty()) {
      Node* node = stack.back();
      stack.pop_back();
      for (const Edge& edge : node->next()) {
        if (edge.node == nullptr) continue;
        ++dependencies[edge.node.get()];
        if (seen.insert(edge.node.get()).second) stack.push_back(edge.node.get());
      }
    }
  }

  std::deque<std::shared_ptr<Node>> ready;
  {
    absl::flat_hash_set<Node*> queued;
    for (const auto& node : starts) {
      if (dependencies[node.get()] == 0 && queued.insert(node.get()).second) {
        ready.push_back(node);
      }
    }
  }
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.front());
    ready.pop_front();
    GradBuffer grads;
    if (auto it = buffers.find(node.get()); it != buffers.end()) {
      grads = std::move(it->second);
      buffers.erase(it);
    } else {
      grads.resize(node->num_outputs());
    }
    RETURN_IF_ERROR(node->CaptureRetained(grads));
    const bool any = std::any_of(grads.begin(), grads.end(),
                                 [](const std::optional<Tensor>& g) { return g.has_value(); });
    GradBuffer inputs(node->next().size());
    if (any) {
      ASSIGN_OR_RETURN(inputs, node->Apply(std::move(grads), retain_graph));
    }
    for (size_t i = 0; i < node->next().size(); ++i) {
      const Edge& edge = node->next()[i];
      if (edge.node == nullptr) continue;
      if (inputs[i]) {
        RETURN_IF_ERROR(AddToBuffer(buffers, edge.node.get(), edge.input_nr,
                                    *std::move(inputs[i]), budget));
      }
      if (--dependencies[edge.node.get()] == 0) ready.push_back(edge.node);
    }
  }
  return absl::OkStatus();
}

}  // namespace tensord
