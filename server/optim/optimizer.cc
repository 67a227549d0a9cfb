#include "optim/optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "core/half.h"
#include "ops/cpu/optimizer_step.h"
#include "optim/update_rules.h"

namespace tensord {
namespace {

// Python's repr of a float, which torch.optim's messages embed: the shortest
// %g form that reads back as the same double ("-1", "1.5", "1e-08", "nan").
std::string PyFloat(double v) {
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// torch tests `not 0.0 <= x`, which lets NaN through only because NaN
// compares false; we also refuse NaN and infinities, which would silently turn
// every parameter into NaN.
bool FiniteAtLeastZero(double v) { return std::isfinite(v) && v >= 0.0; }

absl::Status Invalid(absl::string_view what, double v) {
  return absl::InvalidArgumentError(absl::StrCat("Invalid ", what, ": ", PyFloat(v)));
}

// Zero-filled C-contiguous state shaped and typed like `param`.
absl::StatusOr<Tensor> NewState(const Tensor& param, const std::shared_ptr<MemoryBudget>& budget) {
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(param.dtype(), param.shape(), param.device(), budget));
  // All-zero bits are +0.0 in every floating dtype.
  std::memset(t.data(), 0, static_cast<size_t>(t.nbytes()));
  return t;
}

absl::Status CheckState(int64_t index, const char* name, const std::optional<Tensor>& state,
                        const Tensor& param) {
  if (!state.has_value()) return absl::OkStatus();
  if (state->shape() != param.shape() || state->dtype() != param.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter ", index, " is ", DTypeName(param.dtype()), DimsToString(param.shape()),
        " but its optimizer state ", name, " is ", DTypeName(state->dtype()),
        DimsToString(state->shape()), ": parameters must keep their shape and dtype"));
  }
  return absl::OkStatus();
}

std::byte* DataOrNull(const std::optional<Tensor>& t) {
  return t.has_value() ? t->data() : nullptr;
}

}  // namespace

absl::Status ValidateOptions(OptimizerKind kind, const OptimizerOptions& o) {
  // Same checks in the same order as the torch.optim constructors.
  if (!FiniteAtLeastZero(o.lr)) return Invalid("learning rate", o.lr);
  if (kind == OptimizerKind::kSgd) {
    if (!FiniteAtLeastZero(o.momentum)) return Invalid("momentum value", o.momentum);
    if (!FiniteAtLeastZero(o.weight_decay)) return Invalid("weight_decay value", o.weight_decay);
    // torch accepts any dampening; only non-finite ones are refused here.
    if (!std::isfinite(o.dampening)) return Invalid("dampening value", o.dampening);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
      return absl::InvalidArgumentError("Nesterov momentum requires a momentum and zero dampening");
    }
    return absl::OkStatus();
  }
  if (!FiniteAtLeastZero(o.eps)) return Invalid("epsilon value", o.eps);
  if (!(FiniteAtLeastZero(o.beta1) && o.beta1 < 1.0)) {
    return Invalid("beta parameter at index 0", o.beta1);
  }
  if (!(FiniteAtLeastZero(o.beta2) && o.beta2 < 1.0)) {
    return Invalid("beta parameter at index 1", o.beta2);
  }
  if (!FiniteAtLeastZero(o.weight_decay)) return Invalid("weight_decay value", o.weight_decay);
  return absl::OkStatus();
}

absl::string_view OptimizerKindName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd: return "SGD";
    case OptimizerKind::kAdam: return "Adam";
    case OptimizerKind::kAdamW: return "AdamW";
  }
  return "unknown";  // unreachable: OptimizerKind is a closed enum
}

namespace {

// Validates every group; the message gains the group's index when there are
// several, so that a client can tell which one is wrong.
absl::Status ValidateGroups(OptimizerKind kind, const std::vector<OptimizerOptions>& groups) {
  for (size_t g = 0; g < groups.size(); ++g) {
    absl::Status status = ValidateOptions(kind, groups[g]);
    if (!status.ok() && groups.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(status.message(), " (param group ", g, ")"));
    }
    RETURN_IF_ERROR(status);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Make(
    OptimizerKind kind, std::vector<OptimizerOptions> group_options,
    std::vector<int> param_groups, std::shared_ptr<MemoryBudget> budget) {
  if (budget == nullptr) return absl::InvalidArgumentError("optimizer: no memory budget");
  if (group_options.empty()) return absl::InvalidArgumentError("optimizer: no parameter groups");
  if (param_groups.empty()) {  // torch.optim's own message
    return absl::InvalidArgumentError("optimizer got an empty parameter list");
  }
  for (size_t i = 0; i < param_groups.size(); ++i) {
    if (param_groups[i] < 0 || static_cast<size_t>(param_groups[i]) >= group_options.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer: parameter ", i, " is in group ", param_groups[i],
                       " but there are ", group_options.size(), " groups"));
    }
  }
  RETURN_IF_ERROR(ValidateGroups(kind, group_options));
  return std::unique_ptr<Optimizer>(
      new Optimizer(kind, std::move(group_options), std::move(param_groups), std::move(budget)));
}

Optimizer::Optimizer(OptimizerKind kind, std::vector<OptimizerOptions> group_options,
                     std::vector<int> param_groups, std::shared_ptr<MemoryBudget> budget)
    : kind_(kind), group_options_(std::move(group_options)), param_groups_(std::move(param_groups)),
      budget_(std::move(budget)), states_(param_groups_.size()) {}

absl::Status Optimizer::SetGroupOptions(std::vector<OptimizerOptions> group_options) {
  if (group_options.size() != group_options_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer: ", group_options.size(),
                                                   " group options for ", group_options_.size(),
                                                   " param groups"));
  }
  RETURN_IF_ERROR(ValidateGroups(kind_, group_options));
  group_options_ = std::move(group_options);
  return absl::OkStatus();
}

int64_t Optimizer::state_bytes() const {
  int64_t total = 0;
  for (const ParamState& s : states_) {
    for (const auto* t : {&s.momentum_buffer, &s.exp_avg, &s.exp_avg_sq, &s.max_exp_avg_sq}) {
      if (t->has_value()) total += (*t)->nbytes();
    }
  }
  return total;
}

absl::Status Optimizer::CheckParam(int64_t index, const Tensor& param, const Tensor& grad) const {
  if (!IsFloatingPoint(param.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        OptimizerKindName(kind_), ": parameter ", index, " has dtype ", DTypeName(param.dtype()),
        "; only floating point parameters (float16, bfloat16, float32, float64) can be optimized"));
  }
  if (grad.dtype() != param.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(
        OptimizerKindName(kind_), ": the gradient of parameter ", index, " has dtype ",
        DTypeName(grad.dtype()), " but the parameter has dtype ", DTypeName(param.dtype())));
  }
  if (grad.shape() != param.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(
        OptimizerKindName(kind_), ": the gradient of parameter ", index, " has shape ",
        DimsToString(grad.shape()), " but the parameter has shape ", DimsToString(param.shape())));
  }
  if (param.device() != Device::Cpu() || grad.device() != param.device()) {
    return absl::UnimplementedError(absl::StrCat(
        OptimizerKindName(kind_), ": parameter ", index, " is on ", param.device().ToString(),
        " and its gradient on ", grad.device().ToString(), "; only cpu is supported"));
  }
  RETURN_IF_ERROR(
      PrepareWrite(param, absl::StrCat(OptimizerKindName(kind_), ": parameter ", index)));
  const ParamState& s = states_[index];
  RETURN_IF_ERROR(CheckState(index, "momentum_buffer", s.momentum_buffer, param));
  RETURN_IF_ERROR(CheckState(index, "exp_avg", s.exp_avg, param));
  RETURN_IF_ERROR(CheckState(index, "exp_avg_sq", s.exp_avg_sq, param));
  RETURN_IF_ERROR(CheckState(index, "max_exp_avg_sq", s.max_exp_avg_sq, param));
  return absl::OkStatus();
}

absl::Status Optimizer::AllocateMissingState(int64_t index, const Tensor& param,
                                             const ParamState& state, ParamState& fresh) const {
  const OptimizerOptions& options = group_options_[param_groups_[index]];
  auto allocate = [&](const std::optional<Tensor>& have,
                      std::optional<Tensor>& slot) -> absl::Status {
    if (have.has_value()) return absl::OkStatus();
    ASSIGN_OR_RETURN(slot, NewState(param, budget_));
    return absl::OkStatus();
  };
  if (kind_ == OptimizerKind::kSgd) {
    // Only a step with momentum needs (and creates) the buffer, as in torch.
    if (options.momentum != 0) {
      RETURN_IF_ERROR(allocate(state.momentum_buffer, fresh.momentum_buffer));
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(allocate(state.exp_avg, fresh.exp_avg));
  RETURN_IF_ERROR(allocate(state.exp_avg_sq, fresh.exp_avg_sq));
  if (options.amsgrad) RETURN_IF_ERROR(allocate(state.max_exp_avg_sq, fresh.max_exp_avg_sq));
  return absl::OkStatus();
}

absl::Status Optimizer::Step(absl::Span<const Tensor> params,
                             absl::Span<const std::optional<Tensor>> grads) {
  if (static_cast<int64_t>(params.size()) != num_params() ||
      static_cast<int64_t>(grads.size()) != num_params()) {
    return absl::InvalidArgumentError(absl::StrCat(
        OptimizerKindName(kind_), ": step got ", params.size(), " parameters and ", grads.size(),
        " gradients for an optimizer of ", num_params(), " parameters"));
  }
  // Phase 1, fallible: validate everything and allocate all new state. Fresh
  // state is held aside so that an error drops it (returning its bytes to the
  // budget) and leaves this optimizer as it was.
  std::vector<ParamState> fresh(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].has_value()) continue;
    RETURN_IF_ERROR(CheckParam(static_cast<int64_t>(i), params[i], *grads[i]));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].has_value()) continue;
    RETURN_IF_ERROR(AllocateMissingState(static_cast<int64_t>(i), params[i], states_[i], fresh[i]));
  }
  // Phase 2, infallible: adopt the new state and update every parameter.
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].has_value()) continue;
    ParamState& state = states_[i];
    const bool momentum_buffer_is_new = fresh[i].momentum_buffer.has_value();
    if (fresh[i].momentum_buffer) state.momentum_buffer = std::move(fresh[i].momentum_buffer);
    if (fresh[i].exp_avg) state.exp_avg = std::move(fresh[i].exp_avg);
    if (fresh[i].exp_avg_sq) state.exp_avg_sq = std::move(fresh[i].exp_avg_sq);
    if (fresh[i].max_exp_avg_sq) state.max_exp_avg_sq = std::move(fresh[i].max_exp_avg_sq);
    ++state.step;
    Update(params[i], *grads[i], state, group_options_[param_groups_[i]], momentum_buffer_is_new);
  }
  return absl::OkStatus();
}

void Optimizer::Update(const Tensor& param, const Tensor& grad, ParamState& state,
                       const OptimizerOptions& o, bool momentum_buffer_is_new) const {
  VisitDType(param.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    // CheckParam admitted floating dtypes only; the others are not instantiated.
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> ||
                  std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) {
      using C = cpu::ComputeType<T>;
      if (kind_ == OptimizerKind::kSgd) {
        optim::SgdRule<C> rule;
        rule.neg_lr = static_cast<C>(-o.lr);
        rule.weight_decay = static_cast<C>(o.weight_decay);
        rule.momentum = static_cast<C>(o.momentum);
        rule.one_minus_dampening = static_cast<C>(1.0 - o.dampening);
        rule.has_weight_decay = o.weight_decay != 0;
        rule.has_momentum = o.momentum != 0;
        rule.nesterov = o.nesterov;
        rule.maximize = o.maximize;
        rule.first_step = momentum_buffer_is_new;
        cpu::OptimizerStep<T>(
            param, grad, {rule.has_momentum ? DataOrNull(state.momentum_buffer) : nullptr}, rule);
        return;
      }
      // As torch.optim computes them: in double, from the step as a number.
      const double step = static_cast<double>(state.step);
      const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
      const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
      const bool decoupled = kind_ == OptimizerKind::kAdamW;
      optim::AdamRule<C> rule;
      rule.decay_factor = static_cast<C>(1.0 - o.lr * o.weight_decay);
      rule.weight_decay = static_cast<C>(o.weight_decay);
      rule.one_minus_beta1 = static_cast<C>(1.0 - o.beta1);
      rule.beta2 = static_cast<C>(o.beta2);
      rule.one_minus_beta2 = static_cast<C>(1.0 - o.beta2);
      rule.neg_step_size = static_cast<C>(-(o.lr / bias_correction1));
      rule.bias_correction2_sqrt = static_cast<C>(std::sqrt(bias_correction2));
      rule.eps = static_cast<C>(o.eps);
      rule.decoupled = decoupled;
      rule.has_l2 = !decoupled && o.weight_decay != 0;
      rule.amsgrad = o.amsgrad;
      rule.maximize = o.maximize;
      cpu::OptimizerStep<T>(param, grad,
                            {DataOrNull(state.exp_avg), DataOrNull(state.exp_avg_sq),
                             o.amsgrad ? DataOrNull(state.max_exp_avg_sq) : nullptr},
                            rule);
    }
  });
}

}  // namespace tensord
