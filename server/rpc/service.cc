#include "rpc/service.h"

#include "absl/strings/str_cat.h"
#include "autograd/recorder.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "core/create.h"
#include "rpc/proto_convert.h"
#include "rpc/respond.h"

namespace tensord {
namespace {

// The view op (ops/shape.cc) a ViewRequest names, with its attributes.
absl::StatusOr<std::pair<std::string, std::map<std::string, Attr>>> ViewOp(
    const v1::ViewRequest& request) {
  using Attrs = std::map<std::string, Attr>;
  using Result = std::pair<std::string, Attrs>;
  switch (request.op_case()) {
    case v1::ViewRequest::kTranspose:
      return Result{"transpose",
                    Attrs{{"dim0", request.transpose().dim0()}, {"dim1", request.transpose().dim1()}}};
    case v1::ViewRequest::kPermute:
      return Result{"permute", Attrs{{"dims", ToDims(request.permute().dims())}}};
    case v1::ViewRequest::kView:
      return Result{"view", Attrs{{"shape", ToDims(request.view().shape())}}};
    case v1::ViewRequest::kReshape:
      return Result{"reshape", Attrs{{"shape", ToDims(request.reshape().shape())}}};
    case v1::ViewRequest::kSqueeze:
      return Result{"squeeze", Attrs{{"dims", ToDims(request.squeeze().dims())}}};
    case v1::ViewRequest::kUnsqueeze:
      return Result{"unsqueeze", Attrs{{"dim", request.unsqueeze().dim()}}};
    case v1::ViewRequest::kExpand:
      return Result{"expand", Attrs{{"shape", ToDims(request.expand().shape())}}};
    case v1::ViewRequest::kFlatten:
      return Result{"flatten", Attrs{{"start_dim", request.flatten().start_dim()},
                                     {"end_dim", request.flatten().end_dim()}}};
    case v1::ViewRequest::kSelect:
      return Result{"select",
                    Attrs{{"dim", request.select().dim()}, {"index", request.select().index()}}};
    case v1::ViewRequest::kIndex: {
      std::vector<IndexItem> items;
      for (const v1::IndexItem& item : request.index().items()) {
        ASSIGN_OR_RETURN(IndexItem converted, FromProto(item));
        items.push_back(std::move(converted));
      }
      return Result{"index", Attrs{{"items", std::move(items)}}};
    }
    case v1::ViewRequest::OP_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("view request names no operation");
}

}  // namespace

absl::Status TensordService::Authorize(grpc::CallbackServerContext* context) const {
  if (auth_ == nullptr) return absl::OkStatus();
  return auth_->Check(context->client_metadata());
}

absl::StatusOr<std::shared_ptr<Session>> TensordService::SessionFor(
    grpc::CallbackServerContext* context) {
  RETURN_IF_ERROR(Authorize(context));
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(kSessionMetadataKey);
  if (it == metadata.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing `", kSessionMetadataKey,
                     "` metadata: call OpenSession and send its session_id with every call"));
  }
  return sessions_->Find(std::string(it->second.data(), it->second.size()));
}

grpc::ServerUnaryReactor* TensordService::OpenSession(grpc::CallbackServerContext* context,
                                                      const v1::OpenSessionRequest* request,
                                                      v1::OpenSessionResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(context));
    std::shared_ptr<Session> session = sessions_->Open(request->client_name());
    Log(LogLevel::kDebug, "session opened",
        {{"session", session->id().substr(0, 8)}, {"client", request->client_name()},
         {"peer", context->peer()}});
    response->set_session_id(session->id());
    response->set_lease_seconds(std::chrono::duration<double>(sessions_->lease()).count());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::KeepAlive(grpc::CallbackServerContext* context,
                                                    const v1::KeepAliveRequest*,
                                                    v1::KeepAliveResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    RETURN_IF_ERROR(SessionFor(context).status());
    response->set_lease_seconds(std::chrono::duration<double>(sessions_->lease()).count());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::CloseSession(grpc::CallbackServerContext* context,
                                                       const v1::CloseSessionRequest*,
                                                       v1::CloseSessionResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(const int64_t freed, sessions_->Close(session->id()));
    response->set_freed_tensors(freed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::GetTensor(grpc::CallbackServerContext* context,
                                                    const v1::TensorRef* request,
                                                    v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Variable variable, session->GetVariable(request->handle()));
    FillMeta(request->handle(), variable, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::Free(grpc::CallbackServerContext* context,
                                               const v1::FreeRequest* request,
                                               v1::FreeResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    std::vector<std::string> handles(request->handles().begin(), request->handles().end());
    ASSIGN_OR_RETURN(const int64_t freed, session->Free(handles));
    response->set_freed(freed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::ListTensors(grpc::CallbackServerContext* context,
                                                      const v1::ListTensorsRequest*,
                                                      v1::ListTensorsResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    for (const auto& [handle, variable] : session->List()) {
      FillMeta(handle, variable, response->add_tensors());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::MemoryInfo(grpc::CallbackServerContext* context,
                                                     const v1::MemoryInfoRequest*,
                                                     v1::MemoryInfoResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    response->set_bytes_in_use(budget_->in_use());
    response->set_bytes_limit(budget_->limit());
    response->set_session_bytes(session->StorageBytes());
    response->set_session_tensors(session->size());
    response->set_sessions(sessions_->size());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensordService::Create(grpc::CallbackServerContext* context,
                                                 const v1::CreateRequest* request,
                                                 v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    TensorOptions options;
    ASSIGN_OR_RETURN(options.dtype, FromProto(request->dtype()));
    options.budget = budget_;
    if (request->requires_grad()) RETURN_IF_ERROR(CheckSupportsGrad(options.dtype));
    Dims shape = ToDims(request->shape());
    const bool random = request->kind() == v1::CreateRequest::RAND ||
                        request->kind() == v1::CreateRequest::RANDN;
    const uint64_t seed =
        request->has_seed() ? request->seed() : (random ? session->NextSeed() : 0);
    absl::StatusOr<Tensor> tensor;
    switch (request->kind()) {
      case v1::CreateRequest::EMPTY:
        // Zero-filled, unlike torch.empty: the memory may last have held
        // another session's tensor.
        tensor = Full(std::move(shape), Scalar{int64_t{0}}, options);
        break;
      case v1::CreateRequest::ZEROS:
        tensor = Full(std::move(shape), Scalar{int64_t{0}}, options);
        break;
      case v1::CreateRequest::ONES:
        tensor = Full(std::move(shape), Scalar{int64_t{1}}, options);
        break;
      case v1::CreateRequest::FULL:
        tensor = Full(std::move(shape), FromProto(request->fill()), options);
        break;
      case v1::CreateRequest::ARANGE: {
        const Scalar step =
            request->has_step() ? FromProto(request->step()) : Scalar{int64_t{1}};
        tensor = Arange(FromProto(request->start()), FromProto(request->end()), step, options);
        break;
      }
      case v1::CreateRequest::RAND:
        tensor = Rand(std::move(shape), seed, options);
        break;
      case v1::CreateRequest::RANDN:
        tensor = Randn(std::move(shape), seed, options);
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown creation kind ", static_cast<int>(request->kind())));
    }
    if (!tensor.ok()) return tensor.status();
    std::shared_ptr<AutogradMeta> autograd;
    if (request->requires_grad()) autograd = std::make_shared<AutogradMeta>(true, nullptr, 0);
    return Publish(*session, Variable{*std::move(tensor), std::move(autograd)}, response);
  });
}

grpc::ServerUnaryReactor* TensordService::ManualSeed(grpc::CallbackServerContext* context,
                                                     const v1::ManualSeedRequest* request,
                                                     v1::ManualSeedResponse*) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    session->ManualSeed(request->seed());
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Variable>> TensordService::RunForClient(
    Session& session, const OpContext& op,
    const std::vector<std::shared_ptr<AutogradMeta>>& autograd, bool no_grad) {
  return RunRecorded(op, autograd, !no_grad, [&session] { return session.NextSeed(); });
}

grpc::ServerUnaryReactor* TensordService::View(grpc::CallbackServerContext* context,
                                               const v1::ViewRequest* request,
                                               v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Variable input, session->GetVariable(request->handle()));
    ASSIGN_OR_RETURN(auto view, ViewOp(*request));
    const OpContext op(std::move(view.first), {input.tensor}, std::move(view.second), budget_);
    ASSIGN_OR_RETURN(std::vector<Variable> outputs,
                     RunForClient(*session, op, {input.autograd}, request->no_grad()));
    return Publish(*session, std::move(outputs.at(0)), response);
  });
}

grpc::ServerUnaryReactor* TensordService::Copy(grpc::CallbackServerContext* context,
                                               const v1::CopyRequest* request,
                                               v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Variable input, session->GetVariable(request->handle()));
    std::map<std::string, Attr> attrs;
    std::string name;
    switch (request->kind()) {
      case v1::CopyRequest::CONTIGUOUS:
        name = "contiguous";
        break;
      case v1::CopyRequest::CLONE:
        name = "clone";
        break;
      case v1::CopyRequest::CAST: {
        ASSIGN_OR_RETURN(const DType dtype, FromProto(request->dtype()));
        name = "to";
        attrs.emplace("dtype", dtype);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown copy kind ", static_cast<int>(request->kind())));
    }
    const OpContext op(std::move(name), {input.tensor}, std::move(attrs), budget_);
    ASSIGN_OR_RETURN(std::vector<Variable> outputs,
                     RunForClient(*session, op, {input.autograd}, request->no_grad()));
    return Publish(*session, std::move(outputs.at(0)), response);
  });
}

grpc::ServerUnaryReactor* TensordService::Op(grpc::CallbackServerContext* context,
                                             const v1::OpRequest* request,
                                             v1::OpResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    std::vector<Operand> args;
    std::vector<std::shared_ptr<AutogradMeta>> autograd;
    for (const v1::OpArg& arg : request->args()) {
      if (arg.value_case() == v1::OpArg::kHandle) {
        ASSIGN_OR_RETURN(Variable variable, session->GetVariable(arg.handle()));
        args.push_back(std::move(variable.tensor));
        autograd.push_back(std::move(variable.autograd));
      } else if (arg.value_case() == v1::OpArg::kScalar) {
        args.push_back(FromProto(arg.scalar()));
        autograd.push_back(nullptr);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            request->op(), ": positional arguments must be tensors or numbers"));
      }
    }
    std::map<std::string, Attr> attrs;
    for (const auto& [name, arg] : request->attrs()) {
      absl::StatusOr<Attr> attr = AttrFromProto(arg);
      if (!attr.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(request->op(), ": attribute '", name, "': ", attr.status().message()));
      }
      attrs.emplace(name, *std::move(attr));
    }
    const OpContext op(request->op(), std::move(args), std::move(attrs), budget_);
    ASSIGN_OR_RETURN(std::vector<Variable> outputs,
                     RunForClient(*session, op, autograd, request->no_grad()));
    for (Variable& output : outputs) {
      RETURN_IF_ERROR(Publish(*session, std::move(output), response->add_outputs()));
    }
    return absl::OkStatus();
  });
}

}  // namespace tensord
