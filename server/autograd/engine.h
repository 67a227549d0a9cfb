// Reverse-mode differentiation over the graph that recorded ops built
// (autograd/node.h): Backward runs every node reachable from the roots once,
// in an order where a node runs only after all nodes that feed it gradients
// (Kahn's algorithm on dependency counts), adding gradients that meet at a
// node with `+`, and leaves them in the `grad` of the leaves at the end.
//
// Thread-safety: concurrent Backward calls on disjoint graphs are safe;
// on one graph they serialise per node and accumulate in some order.
#pragma once

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "autograd/node.h"

namespace tensord {

struct BackwardRoot {
  Variable variable;
  // The gradient of the root; absent means ones, allowed for one-element roots.
  std::optional<Tensor> grad;
};

// Errors like PyTorch's: FailedPrecondition for a root that does not
// require grad or a graph already freed; InvalidArgument for an implicit
// gradient of a non-scalar root or a gradient of the wrong shape.
absl::Status Backward(std::vector<BackwardRoot> roots, bool retain_graph,
                      const std::shared_ptr<MemoryBudget>& budget);

}  // namespace tensord
