// TensordService handlers for autograd (requires_grad, grads, backward) and
// optimizers. Like every handler: validate, call the core, map the status.
#include "absl/strings/str_cat.h"
#include "autograd/engine.h"
#include "common/status_macros.h"
#include "optim/param_optimizer.h"
#include "rpc/proto_convert.h"
#include "rpc/respond.h"
#include "rpc/service.h"

namespace tensord {
namespace {

OptimizerOptions FromProto(const v1::OptimizerOptions& proto) {
  OptimizerOptions options;
  options.lr = proto.lr();
  options.momentum = proto.momentum();
  options.dampening = proto.dampening();
  options.nesterov = proto.nesterov();
  options.weight_decay = proto.weight_decay();
  options.beta1 = proto.beta1();
  options.beta2 = proto.beta2();
  options.eps = proto.eps();
  options.amsgrad = proto.amsgrad();
  options.maximize = proto.maximize();
  return options;
}

absl::StatusOr<OptimizerKind> FromProto(v1::CreateOptimizerRequest::Kind kind) {
  switch (kind) {
    case v1::CreateOptimizerRequest::SGD: return OptimizerKind::kSgd;
    case v1::CreateOptimizerRequest::ADAM: return OptimizerKind::kAdam;
    case v1::CreateOptimizerRequest::ADAMW: return OptimizerKind::kAdamW;
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer kind ", static_cast<int>(kind)));
}

}  // namespace

grpc::ServerUnaryReactor* TensordService::SetRequiresGrad(
    grpc::CallbackServerContext* context, const v1::SetRequiresGradRequest* request,
    v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(const Variable current, session->GetVariable(request->handle()));
    if (request->requires_grad()) RETURN_IF_ERROR(CheckSupportsGrad(current.tensor.dtype()));
    if (current.autograd != nullptr && !current.autograd->is_leaf()) {
      if (!request->requires_grad()) {
        return absl::FailedPreconditionError(
            "you can only change requires_grad flags of leaf variables. If you want to use a "
            "computed variable in a subgraph that doesn't require differentiation use "
            "var_no_grad = var.detach()");
      }
      FillMeta(request->handle(), current, response);  // already requires grad
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(const Variable variable, session->EnsureAutograd(request->handle()));
    variable.autograd->requires_grad = request->requires_grad();
    FillMeta(request->handle(), variable, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::Detach(grpc::CallbackServerContext* context,
                                                 const v1::TensorRef* request,
                                                 v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Tensor tensor, session->Get(request->handle()));
    return Publish(*session, Variable{std::move(tensor), nullptr}, response);
  });
}

grpc::ServerUnaryReactor* TensordService::RetainGrad(grpc::CallbackServerContext* context,
                                                     const v1::TensorRef* request,
                                                     v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(const Variable variable, session->GetVariable(request->handle()));
    if (!variable.requires_grad()) {
      return absl::FailedPreconditionError(
          "can't retain_grad on Tensor that has requires_grad=False");
    }
    AutogradMeta& meta = *variable.autograd;
    if (!meta.is_leaf()) {  // leaves keep their grad anyway
      bool first = false;
      {
        absl::MutexLock lock(&meta.mu);
        first = !meta.retains_grad;
        meta.retains_grad = true;
      }
      if (first) meta.grad_fn->RetainGrad(meta.output_nr, variable.autograd);
    }
    FillMeta(request->handle(), variable, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::GetGrad(grpc::CallbackServerContext* context,
                                                  const v1::TensorRef* request,
                                                  v1::GetGradResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(const Variable variable, session->GetVariable(request->handle()));
    if (variable.autograd == nullptr) return absl::OkStatus();
    std::optional<Tensor> grad;
    {
      absl::MutexLock lock(&variable.autograd->mu);
      grad = variable.autograd->grad;
    }
    if (!grad) return absl::OkStatus();
    // A new handle on the grad itself (no copy): later accumulation, which
    // is in place, shows through it, as with torch's `.grad`.
    return Publish(*session, Variable{*std::move(grad), nullptr}, response->mutable_grad());
  });
}

grpc::ServerUnaryReactor* TensordService::SetGrad(grpc::CallbackServerContext* context,
                                                  const v1::SetGradRequest* request,
                                                  v1::SetGradResponse*) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    std::optional<Tensor> grad;
    ASSIGN_OR_RETURN(const Variable target, session->GetVariable(request->handle()));
    if (!request->grad().empty()) {
      ASSIGN_OR_RETURN(grad, session->Get(request->grad()));
      if (grad->shape() != target.tensor.shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "assigned grad has data of a different size: ", DimsToString(grad->shape()),
            " for a tensor of shape ", DimsToString(target.tensor.shape())));
      }
      if (grad->dtype() != target.tensor.dtype()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "assigned grad has data of a different type: ", DTypeName(grad->dtype()),
            " for a tensor of dtype ", DTypeName(target.tensor.dtype())));
      }
    }
    ASSIGN_OR_RETURN(const Variable variable, session->EnsureAutograd(request->handle()));
    absl::MutexLock lock(&variable.autograd->mu);
    variable.autograd->grad = std::move(grad);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::Backward(grpc::CallbackServerContext* context,
                                                   const v1::BackwardRequest* request,
                                                   v1::BackwardResponse*) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    if (request->grad_tensors_size() != 0 &&
        request->grad_tensors_size() != request->tensors_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "got ", request->grad_tensors_size(), " gradients for ", request->tensors_size(),
          " tensors"));
    }
    std::vector<BackwardRoot> roots;
    for (int i = 0; i < request->tensors_size(); ++i) {
      ASSIGN_OR_RETURN(Variable variable, session->GetVariable(request->tensors(i)));
      std::optional<Tensor> grad;
      if (i < request->grad_tensors_size() && !request->grad_tensors(i).empty()) {
        ASSIGN_OR_RETURN(grad, session->Get(request->grad_tensors(i)));
      }
      roots.push_back(BackwardRoot{std::move(variable), std::move(grad)});
    }
    return tensord::Backward(std::move(roots), request->retain_graph(), budget_);
  });
}

grpc::ServerUnaryReactor* TensordService::ZeroGrad(grpc::CallbackServerContext* context,
                                                   const v1::ZeroGradRequest* request,
                                                   v1::ZeroGradResponse*) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    std::vector<Variable> variables;
    for (const std::string& handle : request->handles()) {
      ASSIGN_OR_RETURN(Variable variable, session->GetVariable(handle));
      variables.push_back(std::move(variable));
    }
    if (!request->optimizer().empty()) {
      ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer,
                       session->GetOptimizer(request->optimizer()));
      optimizer->ZeroGrad(request->set_to_none());
    }
    ZeroGrads(variables, request->set_to_none());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::CreateOptimizer(
    grpc::CallbackServerContext* context, const v1::CreateOptimizerRequest* request,
    v1::CreateOptimizerResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(const OptimizerKind kind, FromProto(request->kind()));
    std::vector<std::vector<Variable>> groups;
    std::vector<OptimizerOptions> options;
    for (const v1::ParamGroup& group : request->groups()) {
      std::vector<Variable> params;
      for (const std::string& handle : group.params()) {
        ASSIGN_OR_RETURN(Variable variable, session->GetVariable(handle));
        params.push_back(std::move(variable));
      }
      groups.push_back(std::move(params));
      options.push_back(FromProto(group.options()));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer,
                     ParamOptimizer::Make(kind, std::move(groups), std::move(options), budget_));
    ASSIGN_OR_RETURN(const std::string id, session->PutOptimizer(std::move(optimizer)));
    response->set_optimizer(id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::Step(grpc::CallbackServerContext* context,
                                               const v1::StepRequest* request,
                                               v1::StepResponse*) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(std::shared_ptr<ParamOptimizer> optimizer,
                     session->GetOptimizer(request->optimizer()));
    std::vector<OptimizerOptions> options;
    for (const v1::OptimizerOptions& group : request->groups()) {
      options.push_back(FromProto(group));
    }
    return optimizer->Step(std::move(options));
  });
}

}  // namespace tensord
