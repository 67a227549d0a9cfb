#include "rpc/service.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "rpc/command_codec.h"
#include "rpc/proto_convert.h"
#include "rpc/respond.h"

namespace tensord {

void AddTransportArguments(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 100);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
}

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

void TensordService::BeginDrain() {
  std::vector<std::shared_ptr<Drainable>> streams;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (const auto& [key, stream] : streams_) streams.push_back(stream);
  }
  // Outside mu_: draining may finish a stream, and gRPC may then run its
  // OnDone, which unregisters, on this thread.
  for (const std::shared_ptr<Drainable>& stream : streams) stream->Drain();
}

bool TensordService::Register(std::shared_ptr<Drainable> stream) {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  const Drainable* key = stream.get();
  streams_.emplace(key, std::move(stream));
  return true;
}

void TensordService::Unregister(const Drainable* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

grpc::ServerUnaryReactor* TensordService::Submit(grpc::CallbackServerContext* context,
                                                 absl::StatusOr<CommandBody> body, Reply reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<std::shared_ptr<Session>> session = SessionFor(context);
  const absl::Status status = session.ok() ? body.status() : session.status();
  if (!status.ok()) {
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }
  std::shared_ptr<exec::Stream> stream = (*session)->stream();
  stream->Enqueue([session = *std::move(session), command = Command{*std::move(body), {}},
                   reactor, reply = std::move(reply),
                   metrics = metrics_](const absl::Status& runnable) mutable {
    absl::Status status = runnable;
    if (status.ok()) {
      status = Guarded([&]() -> absl::Status {
        ASSIGN_OR_RETURN(const CommandResult result, tensord::Execute(*session, command));
        reply(result);
        return absl::OkStatus();
      });
      metrics->RecordCommand(command, status);
    }
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

namespace {

// Replies that describe the command's one tensor in `meta`.
auto DescribeIn(v1::TensorMeta* meta) {
  return [meta](const CommandResult& result) {
    if (!result.tensors.empty()) FillMeta(result.tensors[0].first, result.tensors[0].second, meta);
  };
}

void NoReply(const CommandResult&) {}

}  // namespace

grpc::ServerUnaryReactor* TensordService::Create(grpc::CallbackServerContext* context,
                                                 const v1::CreateRequest* request,
                                                 v1::TensorMeta* response) {
  return Submit(context, DecodeBody(*request), DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::ManualSeed(grpc::CallbackServerContext* context,
                                                     const v1::ManualSeedRequest* request,
                                                     v1::ManualSeedResponse*) {
  return Submit(context, ManualSeedCommand{request->seed()}, NoReply);
}

grpc::ServerUnaryReactor* TensordService::View(grpc::CallbackServerContext* context,
                                               const v1::ViewRequest* request,
                                               v1::TensorMeta* response) {
  return Submit(context, DecodeBody(*request), DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::Copy(grpc::CallbackServerContext* context,
                                               const v1::CopyRequest* request,
                                               v1::TensorMeta* response) {
  return Submit(context, DecodeBody(*request), DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::Op(grpc::CallbackServerContext* context,
                                             const v1::OpRequest* request,
                                             v1::OpResponse* response) {
  return Submit(context, DecodeBody(*request), [response](const CommandResult& result) {
    FillOutputs(result, response->mutable_outputs());
  });
}

grpc::ServerUnaryReactor* TensordService::SetRequiresGrad(
    grpc::CallbackServerContext* context, const v1::SetRequiresGradRequest* request,
    v1::TensorMeta* response) {
  return Submit(context, DecodeBody(*request), DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::Detach(grpc::CallbackServerContext* context,
                                                 const v1::TensorRef* request,
                                                 v1::TensorMeta* response) {
  return Submit(context, DetachCommand{request->handle()}, DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::RetainGrad(grpc::CallbackServerContext* context,
                                                     const v1::TensorRef* request,
                                                     v1::TensorMeta* response) {
  return Submit(context, RetainGradCommand{request->handle()}, DescribeIn(response));
}

grpc::ServerUnaryReactor* TensordService::GetGrad(grpc::CallbackServerContext* context,
                                                  const v1::TensorRef* request,
                                                  v1::GetGradResponse* response) {
  return Submit(context, GetGradCommand{request->handle()}, [response](const CommandResult& r) {
    if (!r.tensors.empty()) FillMeta(r.tensors[0].first, r.tensors[0].second, response->mutable_grad());
  });
}

grpc::ServerUnaryReactor* TensordService::SetGrad(grpc::CallbackServerContext* context,
                                                  const v1::SetGradRequest* request,
                                                  v1::SetGradResponse*) {
  return Submit(context, DecodeBody(*request), NoReply);
}

grpc::ServerUnaryReactor* TensordService::Backward(grpc::CallbackServerContext* context,
                                                   const v1::BackwardRequest* request,
                                                   v1::BackwardResponse*) {
  return Submit(context, DecodeBody(*request), NoReply);
}

grpc::ServerUnaryReactor* TensordService::ZeroGrad(grpc::CallbackServerContext* context,
                                                   const v1::ZeroGradRequest* request,
                                                   v1::ZeroGradResponse*) {
  return Submit(context, DecodeBody(*request), NoReply);
}

grpc::ServerUnaryReactor* TensordService::CreateOptimizer(
    grpc::CallbackServerContext* context, const v1::CreateOptimizerRequest* request,
    v1::CreateOptimizerResponse* response) {
  return Submit(context, DecodeBody(*request), [response](const CommandResult& result) {
    response->set_optimizer(result.optimizer);
  });
}

grpc::ServerUnaryReactor* TensordService::Step(grpc::CallbackServerContext* context,
                                               const v1::StepRequest* request,
                                               v1::StepResponse*) {
  return Submit(context, DecodeBody(*request), NoReply);
}

}  // namespace tensord
