#include "autograd/node.h"

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/views.h"

namespace tensord {
namespace {

// Sums `grad` down to `shape`, undoing a broadcast: leading dims that the
// broadcast added, and dims that were 1 and grew.
absl::StatusOr<Tensor> SumTo(const Tensor& grad, const Dims& shape,
                             const std::shared_ptr<MemoryBudget>& budget) {
  const int64_t lead = grad.ndim() - static_cast<int64_t>(shape.size());
  auto mismatch = [&] {
    return absl::InternalError(absl::StrCat("gradient of shape ", DimsToString(grad.shape()),
                                            " does not reduce to the input's shape ",
                                            DimsToString(shape)));
  };
  if (lead < 0) return mismatch();
  Dims dims;
  for (int64_t d = 0; d < grad.ndim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] != grad.shape()[d]) {
      if (shape[d - lead] != 1) return mismatch();
      dims.push_back(d);
    }
  }
  Tensor summed = grad;
  if (!dims.empty()) {
    ASSIGN_OR_RETURN(summed, CallOp("sum", {grad}, budget, {{"dim", dims}, {"keepdim", true}}));
  }
  return Reshape(summed, shape);
}

bool SameShape(const Dims& a, const Dims& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

bool SupportsGrad(DType dtype) { return IsFloatingPoint(dtype); }

absl::Status CheckSupportsGrad(DType dtype) {
  if (SupportsGrad(dtype)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "only tensors of floating-point dtype can require gradients, not ", DTypeName(dtype)));
}

absl::Status AccumulateInto(AutogradMeta& meta, Tensor incoming) {
  absl::MutexLock lock(&meta.mu);
  if (!meta.grad) {
    // Keep the incoming tensor itself when nothing else references its
    // storage and it covers all of it (the usual case: a fresh result of
    // the backward); otherwise copy, so that the grad never aliases
    // another tensor.
    const bool owned = incoming.storage().use_count() == 1 && incoming.is_contiguous() &&
                       incoming.nbytes() == incoming.storage()->nbytes();
    if (owned) {
      meta.grad = std::move(incoming);
    } else {
      ASSIGN_OR_RETURN(meta.grad, Clone(incoming));
    }
    return absl::OkStatus();
  }
  // Later gradients add in place, like PyTorch: a handle the client holds
  // on the grad sees the sum.
  RETURN_IF_ERROR(
      RunOp(OpContext("add_", {*meta.grad, incoming}, {}, incoming.storage()->budget())).status());
  meta.grad->storage()->BumpVersion();
  return absl::OkStatus();
}

Edge GradientEdge(const Variable& variable) {
  if (!variable.requires_grad()) return {};
  AutogradMeta& meta = *variable.autograd;
  if (meta.grad_fn != nullptr) return {meta.grad_fn, meta.output_nr};
  absl::MutexLock lock(&meta.mu);
  std::shared_ptr<Node> accumulator = meta.accumulator.lock();
  if (accumulator == nullptr) {
    accumulator = std::make_shared<GradAccumulator>(variable.autograd);
    meta.accumulator = accumulator;
  }
  return {accumulator, 0};
}

Node::~Node() {
  // A node whose only owner is this one (use_count 1) dies with it: it moves
  // to a work list, where its own edges are taken before it is destroyed,
  // so no destructor finds anything left to release and the stack stays
  // flat. Edges to nodes that others hold are dropped in place, which never
  // destroys them; dropping one of two edges to the same node (x * x) leaves
  // the other as the sole owner, taken in turn.
  std::vector<std::shared_ptr<Node>> doomed;
  auto release = [&doomed](std::vector<Edge>& edges) {
    for (Edge& edge : edges) {
      if (edge.node == nullptr) continue;
      if (edge.node.use_count() == 1) {
        doomed.push_back(std::move(edge.node));
      } else {
        edge.node.reset();
      }
    }
  };
  release(next_);
  while (!doomed.empty()) {
    std::shared_ptr<Node> node = std::move(doomed.back());
    doomed.pop_back();
    release(node->next_);
  }  // each `node` is destroyed here, with no edges left
}

void Node::RetainGrad(int output_nr, std::weak_ptr<AutogradMeta> meta) {
  absl::MutexLock lock(&retained_mu_);
  retained_.emplace_back(output_nr, std::move(meta));
}

absl::Status Node::CaptureRetained(const std::vector<std::optional<Tensor>>& grads) {
  // Copied out so that no node lock is held while a meta is locked (the
  // RetainGrad RPC takes them in the other order).
  std::vector<std::pair<int, std::weak_ptr<AutogradMeta>>> retained;
  {
    absl::MutexLock lock(&retained_mu_);
    retained = retained_;
  }
  for (const auto& [output_nr, weak] : retained) {
    std::shared_ptr<AutogradMeta> meta = weak.lock();
    if (meta != nullptr && grads[output_nr]) {
      RETURN_IF_ERROR(AccumulateInto(*meta, *grads[output_nr]));
    }
  }
  return absl::OkStatus();
}

OpNode::OpNode(std::string name, std::vector<Edge> next, const OpDef* def, OpContext saved,
               std::vector<InputInfo> inputs, std::vector<Tensor> saved_outputs,
               int num_outputs)
    : Node(std::move(name), std::move(next)), def_(def), charged_(saved.budget()),
      inputs_(std::move(inputs)),
      num_outputs_(num_outputs), saved_(std::move(saved)),
      saved_outputs_(std::move(saved_outputs)),
      saves_tensors_(!saved_outputs_.empty() || saved_.num_args() > 0) {
  for (size_t i = 0; i < saved_.num_args(); ++i) {
    if (const Tensor* t = std::get_if<Tensor>(&saved_.arg(i))) {
      versions_.push_back(t->storage()->version());
    }
  }
  for (const Tensor& t : saved_outputs_) versions_.push_back(t.storage()->version());
}

OpNode::~OpNode() {
  if (charged_ != nullptr) charged_->Release(kNodeBytes);
}

absl::Status OpNode::CheckVersions() const {
  size_t k = 0;
  auto check = [&](const Tensor& t) -> absl::Status {
    const uint64_t expected = versions_[k++];
    if (t.storage()->version() == expected) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "one of the variables needed for gradient computation has been modified by an "
        "inplace operation: [", DTypeName(t.dtype()), " ", DimsToString(t.shape()),
        "] is at version ", t.storage()->version(), "; expected version ", expected,
        " instead"));
  };
  for (size_t i = 0; i < saved_.num_args(); ++i) {
    if (const Tensor* t = std::get_if<Tensor>(&saved_.arg(i))) RETURN_IF_ERROR(check(*t));
  }
  for (const Tensor& t : saved_outputs_) RETURN_IF_ERROR(check(t));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::optional<Tensor>>> OpNode::Apply(
    std::vector<std::optional<Tensor>> grads, bool retain_graph) {
  absl::MutexLock lock(&mu_);
  if (released_ && saves_tensors_) {
    return absl::FailedPreconditionError(absl::StrCat(
        name(), ": trying to backward through the graph a second time (or directly access "
        "saved tensors after they have already been freed). Saved intermediate values of the "
        "graph are freed when you call .backward(). Specify retain_graph=True if you need to "
        "backward through the graph a second time"));
  }
  RETURN_IF_ERROR(CheckVersions());
  absl::InlinedVector<bool, 4> needs_grad;
  for (const Edge& edge : next()) needs_grad.push_back(edge.node != nullptr);
  const GradContext context(saved_, inputs_, saved_outputs_, grads, needs_grad);
  absl::StatusOr<std::vector<std::optional<Tensor>>> raw = def_->backward(context);
  if (!raw.ok()) {
    return absl::Status(raw.status().code(), absl::StrCat(name(), ": ", raw.status().message()));
  }
  if (raw->size() != next().size()) {
    return absl::InternalError(absl::StrCat(name(), " returned ", raw->size(),
                                            " gradients for ", next().size(), " arguments"));
  }
  std::vector<std::optional<Tensor>> result(next().size());
  for (size_t i = 0; i < next().size(); ++i) {
    if (!needs_grad[i] || !(*raw)[i]) continue;
    Tensor g = *std::move((*raw)[i]);
    if (g.dtype() != inputs_[i].dtype) {
      ASSIGN_OR_RETURN(g, Cast(g, inputs_[i].dtype));
    }
    if (!SameShape(g.shape(), inputs_[i].shape)) {
      ASSIGN_OR_RETURN(g, SumTo(g, inputs_[i].shape, saved_.budget()));
    }
    result[i] = std::move(g);
  }
  if (!retain_graph) {
    saved_ = saved_.WithoutArgs();
    saved_outputs_.clear();
    versions_.clear();
    released_ = true;
  }
  return result;
}

absl::StatusOr<std::vector<std::optional<Tensor>>> GradAccumulator::Apply(
    std::vector<std::optional<Tensor>> grads, bool) {
  if (grads[0]) RETURN_IF_ERROR(AccumulateInto(*leaf_, *std::move(grads[0])));
  return std::vector<std::optional<Tensor>>{};
}

}  // namespace tensord
