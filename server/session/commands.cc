#include "session/commands.h"

#include "absl/strings/str_cat.h"
#include "autograd/engine.h"
#include "autograd/handle_rules.h"
#include "autograd/recorder.h"
#include "common/status_macros.h"
#include "core/create.h"

namespace tensord {
namespace {

// The handles for `count` outputs: the command's own (exactly `count`), or
// fresh random ones when it names none.
absl::StatusOr<std::vector<std::string>> OutputHandles(const Command& command, size_t count) {
  if (command.outputs.empty()) {
    std::vector<std::string> handles;
    for (size_t i = 0; i < count; ++i) handles.push_back(NewRandomId());
    return handles;
  }
  if (command.outputs.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat(
        CommandName(command), " produces ", count, count == 1 ? " output" : " outputs",
        " but the command names ", command.outputs.size(), " handles for them"));
  }
  return command.outputs;  // PutAs checks that they are new
}

// Registers `variables` under the command's output handles.
absl::StatusOr<CommandResult> Publish(Session& session, const Command& command,
                                      std::vector<Variable> variables) {
  ASSIGN_OR_RETURN(std::vector<std::string> handles,
                   OutputHandles(command, variables.size()));
  CommandResult result;
  for (size_t i = 0; i < handles.size(); ++i) result.tensors.emplace_back(handles[i], variables[i]);
  RETURN_IF_ERROR(session.PutAs(handles, std::move(variables)));
  return result;
}

absl::StatusOr<CommandResult> RunOpCommand(Session& session, const Command& command,
                                    const OpCommand& op) {
  // Named outputs are checked before the op runs, so that a bad handle costs
  // no compute; their count is known only after it ran, except for in-place
  // ops, which must not change their target before a command fails.
  if (!command.outputs.empty()) {
    ASSIGN_OR_RETURN(const OpDef* def, FindOp(op.op));
    if (def->traits & kInPlace) {
      return absl::InvalidArgumentError(absl::StrCat(
          op.op, " produces 0 outputs (it changes its first argument in place) but the command "
          "names ", command.outputs.size(), " handles for them"));
    }
    RETURN_IF_ERROR(session.CheckNewHandles(command.outputs));
  }
  std::vector<Operand> args;
  std::vector<std::shared_ptr<AutogradMeta>> autograd;
  args.reserve(op.args.size());
  autograd.reserve(op.args.size());
  for (const ArgRef& arg : op.args) {
    if (const std::string* handle = std::get_if<std::string>(&arg)) {
      ASSIGN_OR_RETURN(Variable variable, session.GetVariable(*handle));
      args.push_back(std::move(variable.tensor));
      autograd.push_back(std::move(variable.autograd));
    } else {
      args.push_back(std::get<Scalar>(arg));
      autograd.push_back(nullptr);
    }
  }
  const OpContext context(op.op, std::move(args), op.attrs, session.budget());
  ASSIGN_OR_RETURN(std::vector<Variable> outputs,
                   RunRecorded(context, autograd, !op.no_grad, [&session] {
                     return session.NextSeed();
                   }));
  return Publish(session, command, std::move(outputs));
}

absl::StatusOr<CommandResult> Create(Session& session, const Command& command,
                                     const CreateCommand& create) {
  if (create.requires_grad) RETURN_IF_ERROR(CheckSupportsGrad(create.dtype));
  if (!command.outputs.empty()) RETURN_IF_ERROR(session.CheckNewHandles(command.outputs));
  TensorOptions options;
  options.dtype = create.dtype;
  options.budget = session.budget();
  using Kind = CreateCommand::Kind;
  const bool random = create.kind == Kind::kRand || create.kind == Kind::kRandn;
  const uint64_t seed = create.seed ? *create.seed : (random ? session.NextSeed() : 0);
  absl::StatusOr<Tensor> tensor;
  switch (create.kind) {
    case Kind::kEmpty:
      // Zero-filled, unlike torch.empty: the memory may last have held
      // another session's tensor.
    case Kind::kZeros:
      tensor = Full(create.shape, Scalar{int64_t{0}}, options);
      break;
    case Kind::kOnes:
      tensor = Full(create.shape, Scalar{int64_t{1}}, options);
      break;
    case Kind::kFull:
      // full() stores the user's number: it must fit (uint8 takes -1 as 255).
      if (absl::Status fits = CheckConvertible(create.fill, create.dtype); !fits.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("full: ", fits.message()));
      }
      tensor = Full(create.shape, create.fill, options);
      break;
    case Kind::kArange:
      tensor = Arange(create.start, create.end, create.step, options);
      break;
    case Kind::kRand:
      tensor = Rand(create.shape, seed, options);
      break;
    case Kind::kRandn:
      tensor = Randn(create.shape, seed, options);
      break;
  }
  if (!tensor.ok()) return tensor.status();
  std::shared_ptr<AutogradMeta> autograd;
  if (create.requires_grad) autograd = std::make_shared<AutogradMeta>(true, nullptr, 0);
  return Publish(session, command, {Variable{*std::move(tensor), std::move(autograd)}});
}

absl::StatusOr<CommandResult> SetRequiresGrad(Session& session,
                                              const SetRequiresGradCommand& set) {
  ASSIGN_OR_RETURN(const Variable current, session.GetVariable(set.handle));
  ASSIGN_OR_RETURN(const bool change, CheckRequiresGradChange(current, set.requires_grad));
  CommandResult result;
  if (!change) {
    result.tensors.emplace_back(set.handle, current);
    return result;
  }
  ASSIGN_OR_RETURN(const Variable variable, session.EnsureAutograd(set.handle));
  variable.autograd->requires_grad = set.requires_grad;
  result.tensors.emplace_back(set.handle, variable);
  return result;
}

absl::StatusOr<CommandResult> GetGrad(Session& session, const Command& command,
                                      const GetGradCommand& get) {
  ASSIGN_OR_RETURN(const Variable variable, session.GetVariable(get.handle));
  std::optional<Tensor> grad = CurrentGrad(variable);
  if (!grad) {
    // None: the handle the client named stays unused (it frees it like any).
    if (command.outputs.size() > 1) {
      return absl::InvalidArgumentError("get_grad names at most one output handle");
    }
    return CommandResult{};
  }
  return Publish(session, command, {Variable{*std::move(grad), nullptr}});
}

absl::Status SetGrad(Session& session, const SetGradCommand& set) {
  std::optional<Tensor> grad;
  ASSIGN_OR_RETURN(const Variable target, session.GetVariable(set.handle));
  if (!set.grad.empty()) {
    ASSIGN_OR_RETURN(grad, session.Get(set.grad));
    RETURN_IF_ERROR(CheckGradAssignment(target.tensor, *grad));
  }
  ASSIGN_OR_RETURN(const Variable variable, session.EnsureAutograd(set.handle));
  AssignGrad(*variable.autograd, std::move(grad));
  return absl::OkStatus();
}

absl::Status RunBackward(Session& session, const BackwardCommand& backward) {
  if (!backward.grads.empty() && backward.grads.size() != backward.roots.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "got ", backward.grads.size(), " gradients for ", backward.roots.size(), " tensors"));
  }
  std::vector<BackwardRoot> roots;
  for (size_t i = 0; i < backward.roots.size(); ++i) {
    ASSIGN_OR_RETURN(Variable variable, session.GetVariable(backward.roots[i]));
    std::optional<Tensor> grad;
    if (i < backward.grads.size() && !backward.grads[i].empty()) {
      ASSIGN_OR_RETURN(grad, session.Get(backward.grads[i]));
    }
    roots.push_back(BackwardRoot{std::move(variable), std::move(grad)});
  }
  return Backward(std::move(roots), backward.retain_graph, session.budget());
}

absl::Status ZeroGrad(Session& session, const ZeroGradCommand& zero) {
  std::vector<Variable> variables;
  for (const std::string& handle : zero.handles) {
    ASSIGN_OR_RETURN(Variable variable, session.GetVariable(handle));
    variables.push_back(std::move(variable));
  }
  if (!zero.optimizer.empty()) {
    ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer,
                     session.GetOptimizer(zero.optimizer));
    RETURN_IF_ERROR(optimizer->ZeroGrad(zero.set_to_none));
  }
  return ZeroGrads(variables, zero.set_to_none);
}

absl::StatusOr<CommandResult> CreateOptimizer(Session& session, const Command& command,
                                              const CreateOptimizerCommand& create) {
  if (command.outputs.size() > 1) {
    return absl::InvalidArgumentError("create_optimizer names at most one output handle");
  }
  if (!command.outputs.empty()) RETURN_IF_ERROR(session.CheckNewHandles(command.outputs));
  std::vector<std::vector<Variable>> groups;
  for (const std::vector<std::string>& group : create.groups) {
    std::vector<Variable> params;
    for (const std::string& handle : group) {
      ASSIGN_OR_RETURN(Variable variable, session.GetVariable(handle));
      params.push_back(std::move(variable));
    }
    groups.push_back(std::move(params));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer,
                   ParamOptimizer::Make(create.kind, std::move(groups), create.options,
                                        session.budget()));
  CommandResult result;
  if (command.outputs.empty()) {
    ASSIGN_OR_RETURN(result.optimizer, session.PutOptimizer(std::move(optimizer)));
  } else {
    RETURN_IF_ERROR(session.PutOptimizerAs(command.outputs[0], std::move(optimizer)));
    result.optimizer = command.outputs[0];
  }
  return result;
}

absl::Status Step(Session& session, const StepCommand& step) {
  ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer, session.GetOptimizer(step.optimizer));
  return optimizer->Step(step.options);
}

// Commands that make nothing must not name outputs.
absl::Status NoOutputs(const Command& command) {
  if (command.outputs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(CommandName(command), " makes no tensor but the command names ",
                                                 command.outputs.size(), " output handles"));
}

}  // namespace

std::string CommandName(const Command& command) {
  struct Namer {
    std::string operator()(const OpCommand& op) const { return op.op; }
    std::string operator()(const CreateCommand&) const { return "create"; }
    std::string operator()(const ReleaseCommand&) const { return "release"; }
    std::string operator()(const SetRequiresGradCommand&) const { return "requires_grad_"; }
    std::string operator()(const DetachCommand&) const { return "detach"; }
    std::string operator()(const RetainGradCommand&) const { return "retain_grad"; }
    std::string operator()(const GetGradCommand&) const { return "get_grad"; }
    std::string operator()(const SetGradCommand&) const { return "set_grad"; }
    std::string operator()(const BackwardCommand&) const { return "backward"; }
    std::string operator()(const ZeroGradCommand&) const { return "zero_grad"; }
    std::string operator()(const CreateOptimizerCommand&) const { return "create_optimizer"; }
    std::string operator()(const StepCommand&) const { return "step"; }
    std::string operator()(const ManualSeedCommand&) const { return "manual_seed"; }
    std::string operator()(const SyncCommand&) const { return "sync"; }
  };
  return std::visit(Namer{}, command.body);
}

absl::StatusOr<CommandResult> Execute(Session& session, const Command& command) {
  const CommandBody& body = command.body;
  if (const auto* op = std::get_if<OpCommand>(&body)) return RunOpCommand(session, command, *op);
  if (const auto* create = std::get_if<CreateCommand>(&body)) {
    return Create(session, command, *create);
  }
  if (const auto* detach = std::get_if<DetachCommand>(&body)) {
    ASSIGN_OR_RETURN(Tensor tensor, session.Get(detach->handle));
    return Publish(session, command, {Variable{std::move(tensor), nullptr}});
  }
  if (const auto* get = std::get_if<GetGradCommand>(&body)) return GetGrad(session, command, *get);
  if (const auto* create = std::get_if<CreateOptimizerCommand>(&body)) {
    return CreateOptimizer(session, command, *create);
  }
  RETURN_IF_ERROR(NoOutputs(command));
  if (const auto* set = std::get_if<SetRequiresGradCommand>(&body)) {
    return SetRequiresGrad(session, *set);
  }
  if (const auto* retain = std::get_if<RetainGradCommand>(&body)) {
    ASSIGN_OR_RETURN(const Variable variable, session.GetVariable(retain->handle));
    RETURN_IF_ERROR(RetainGrad(variable.autograd));
    return CommandResult{{{retain->handle, variable}}, {}};
  }
  absl::Status status;
  if (const auto* release = std::get_if<ReleaseCommand>(&body)) {
    session.Release(release->handles);
  } else if (const auto* set = std::get_if<SetGradCommand>(&body)) {
    status = SetGrad(session, *set);
  } else if (const auto* backward = std::get_if<BackwardCommand>(&body)) {
    status = RunBackward(session, *backward);
  } else if (const auto* zero = std::get_if<ZeroGradCommand>(&body)) {
    status = ZeroGrad(session, *zero);
  } else if (const auto* step = std::get_if<StepCommand>(&body)) {
    status = Step(session, *step);
  } else if (const auto* seed = std::get_if<ManualSeedCommand>(&body)) {
    session.ManualSeed(seed->seed);
  }  // SyncCommand: nothing to do
  if (!status.ok()) return status;
  return CommandResult{};
}

}  // namespace tensord
