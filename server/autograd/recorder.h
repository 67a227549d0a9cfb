// Runs ops on behalf of a client and records them for autograd: the one
// place where a forward becomes a graph node. RPC handlers call RunRecorded
// with the arguments' autograd state; it runs the op (ops/op.h) and, when
// grad mode is on and some tensor argument requires grad, attaches an
// OpNode (autograd/node.h) to the outputs of floating-point dtype.
//
// In-place ops are refused on tensors that take part in autograd unless
// grad mode is off (PyTorch refuses them on leaves; tensord also on
// non-leaves, which it cannot rebase), and bump their target's version.
//
// Thread-safety: reentrant.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "autograd/node.h"
#include "ops/op.h"

namespace tensord {

// `arg_autograd[i]` is the autograd state of argument i (null for numbers
// and for tensors that need no grad). `next_seed` gives ops marked kRandom
// a seed when the request names none.
absl::StatusOr<std::vector<Variable>> RunRecorded(
    const OpContext& context, absl::Span<const std::shared_ptr<AutogradMeta>> arg_autograd,
    bool grad_enabled, const std::function<uint64_t()>& next_seed);

// "log_softmax" -> "LogSoftmaxBackward0", PyTorch's naming of backward nodes.
std::string BackwardName(absl::string_view op);

}  // namespace tensord
