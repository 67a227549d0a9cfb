#include "rpc/service.h"

#include <exception>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "core/create.h"
#include "core/views.h"
#include "common/log.h"
#include "rpc/proto_convert.h"

namespace tensord {
namespace {

// Runs `body` and finishes the call with its status. This is the boundary
// where no failure may escape: an exception (an allocation failure on a
// bizarre request, say) becomes a status instead of ending the process.
template <typename Body>
grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, Body&& body) {
  absl::Status status;
  try {
    status = body();
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError("the server ran out of memory for this request");
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Registers `tensor` in `session` and describes it in `meta`.
absl::Status Publish(Session& session, Tensor tensor, v1::TensorMeta* meta) {
  ASSIGN_OR_RETURN(const std::string handle, session.Put(tensor));
  FillMeta(handle, tensor, meta);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ApplyView(const Tensor& t, const v1::ViewRequest& request) {
  switch (request.op_case()) {
    case v1::ViewRequest::kTranspose:
      return Transpose(t, request.transpose().dim0(), request.transpose().dim1());
    case v1::ViewRequest::kPermute:
      return Permute(t, ToDims(request.permute().dims()));
    case v1::ViewRequest::kView:
      return View(t, ToDims(request.view().shape()));
    case v1::ViewRequest::kReshape:
      return Reshape(t, ToDims(request.reshape().shape()));
    case v1::ViewRequest::kSqueeze:
      return Squeeze(t, ToDims(request.squeeze().dims()));
    case v1::ViewRequest::kUnsqueeze:
      return Unsqueeze(t, request.unsqueeze().dim());
    case v1::ViewRequest::kExpand:
      return Expand(t, ToDims(request.expand().shape()));
    case v1::ViewRequest::kFlatten:
      return Flatten(t, request.flatten().start_dim(), request.flatten().end_dim());
    case v1::ViewRequest::kSelect:
      return Select(t, request.select().dim(), request.select().index());
    case v1::ViewRequest::kIndex: {
      std::vector<IndexItem> items;
      for (const v1::IndexItem& item : request.index().items()) {
        ASSIGN_OR_RETURN(IndexItem converted, FromProto(item));
        items.push_back(std::move(converted));
      }
      return Index(t, items);
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
    ASSIGN_OR_RETURN(Tensor tensor, session->Get(request->handle()));
    FillMeta(request->handle(), tensor, response);
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
    for (const auto& [handle, tensor] : session->List()) {
      FillMeta(handle, tensor, response->add_tensors());
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
    Dims shape = ToDims(request->shape());
    const bool random = request->kind() == v1::CreateRequest::RAND ||
                        request->kind() == v1::CreateRequest::RANDN;
    const uint64_t seed =
        request->has_seed() ? request->seed() : (random ? session->NextSeed() : 0);
    absl::StatusOr<Tensor> tensor;
    switch (request->kind()) {
      case v1::CreateRequest::EMPTY:
        tensor = Tensor::Empty(options.dtype, std::move(shape), options.device, budget_);
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
    return Publish(*session, *std::move(tensor), response);
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

grpc::ServerUnaryReactor* TensordService::View(grpc::CallbackServerContext* context,
                                               const v1::ViewRequest* request,
                                               v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Tensor tensor, session->Get(request->handle()));
    ASSIGN_OR_RETURN(Tensor view, ApplyView(tensor, *request));
    return Publish(*session, std::move(view), response);
  });
}

grpc::ServerUnaryReactor* TensordService::Copy(grpc::CallbackServerContext* context,
                                               const v1::CopyRequest* request,
                                               v1::TensorMeta* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    ASSIGN_OR_RETURN(Tensor tensor, session->Get(request->handle()));
    absl::StatusOr<Tensor> result;
    switch (request->kind()) {
      case v1::CopyRequest::CONTIGUOUS:
        result = Contiguous(tensor);
        break;
      case v1::CopyRequest::CLONE:
        result = Clone(tensor);
        break;
      case v1::CopyRequest::CAST: {
        ASSIGN_OR_RETURN(const DType dtype, FromProto(request->dtype()));
        result = Cast(tensor, dtype);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown copy kind ", static_cast<int>(request->kind())));
    }
    if (!result.ok()) return result.status();
    return Publish(*session, *std::move(result), response);
  });
}

grpc::ServerUnaryReactor* TensordService::Op(grpc::CallbackServerContext* context,
                                             const v1::OpRequest* request,
                                             v1::OpResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(context));
    std::vector<Operand> args;
    for (const v1::OpArg& arg : request->args()) {
      if (arg.value_case() == v1::OpArg::kHandle) {
        ASSIGN_OR_RETURN(Tensor tensor, session->Get(arg.handle()));
        args.push_back(std::move(tensor));
      } else if (arg.value_case() == v1::OpArg::kScalar) {
        args.push_back(FromProto(arg.scalar()));
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
    ASSIGN_OR_RETURN(std::vector<Tensor> outputs,
                     RunOp(OpContext(request->op(), std::move(args), std::move(attrs), budget_)));
    for (Tensor& output : outputs) {
      RETURN_IF_ERROR(Publish(*session, std::move(output), response->add_outputs()));
    }
    return absl::OkStatus();
  });
}

}  // namespace tensord
