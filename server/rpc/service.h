// The gRPC service: thin callback-API handlers. They authenticate, find the
// session, decode the request into a command (command_codec.h) and enqueue
// it on the session's stream; a worker runs it (session/commands.h) and the
// handler's reply goes out from there. No tensor compute runs on gRPC's
// threads. Control calls (OpenSession, KeepAlive, CloseSession, GetTensor,
// ListTensors, MemoryInfo, Free) only touch bookkeeping and answer inline,
// so they never wait behind a session's queue.
//
// Handlers live in service.cc (unary calls), execute.cc (the pipelined
// Execute stream) and transfer.cc (Upload and Download, raw-ByteBuffer
// methods so that tensor bytes bypass protobuf; see chunk_codec.h).
//
// Thread-safety: handlers run concurrently on gRPC's callback threads and
// completions on the scheduler's workers; shared state lives in the
// thread-safe SessionRegistry and MemoryBudget, and the set of live Execute
// streams under mu_.
#pragma once

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/storage.h"
#include "rpc/auth.h"
#include "rpc/metrics.h"
#include "session/commands.h"
#include "session/session.h"
#include "tensord/v1/tensord.grpc.pb.h"

namespace tensord {

// Metadata key that carries the session id on every RPC but OpenSession.
inline constexpr char kSessionMetadataKey[] = "tensord-session";
// Trailing metadata of an Execute stream that the server itself ended (its
// value says why: done, draining, superseded, error, refused). A stream
// that breaks without it lost its connection, and the client resumes it.
inline constexpr char kStreamEndKey[] = "tensord-stream-end";

// Sets the transport's channel arguments that sessions rely on. Clients
// send HTTP/2 keep-alive pings to notice a dead link well within their
// session's lease (the Python client pings every lease/8, at most every
// 250 ms), so pings are accepted down to every 100 ms, with or without
// calls; the server pings idle connections itself, so that calls on a
// connection that died silently end (and free what they hold) within a minute.
void AddTransportArguments(grpc::ServerBuilder& builder);

namespace service_internal {
using G = v1::Tensord;
// The generated callback service with Upload, Download and Execute read and
// written as raw bytes: transfer.cc frames the bulk bytes itself, and
// execute.cc parses each ExecuteRequest itself so that a malformed one is
// INVALID_ARGUMENT (gRPC's typed reader reports a message that fails to
// parse as the end of the stream). The generated CallbackService already
// fixes Execute's typed signature, so every method is named here.
using Base =
    G::WithCallbackMethod_OpenSession<G::WithCallbackMethod_KeepAlive<
    G::WithCallbackMethod_CloseSession<G::WithRawCallbackMethod_Upload<
    G::WithRawCallbackMethod_Download<G::WithCallbackMethod_GetTensor<
    G::WithCallbackMethod_Free<G::WithCallbackMethod_ListTensors<
    G::WithCallbackMethod_MemoryInfo<G::WithCallbackMethod_Create<
    G::WithCallbackMethod_ManualSeed<G::WithCallbackMethod_View<G::WithCallbackMethod_Copy<
    G::WithCallbackMethod_Op<G::WithCallbackMethod_SetRequiresGrad<G::WithCallbackMethod_Detach<
    G::WithCallbackMethod_RetainGrad<G::WithCallbackMethod_GetGrad<
    G::WithCallbackMethod_SetGrad<G::WithCallbackMethod_Backward<G::WithCallbackMethod_ZeroGrad<
    G::WithCallbackMethod_CreateOptimizer<G::WithCallbackMethod_Step<
    G::WithRawCallbackMethod_Execute<G::Service>>>>>>>>>>>>>>>>>>>>>>>>;
}  // namespace service_internal

class TensordService final : public service_internal::Base {
 public:
  // `auth` may be null (no token required); `metrics` must outlive the service.
  TensordService(std::shared_ptr<MemoryBudget> budget, SessionRegistry* sessions,
                 std::shared_ptr<const TokenAuthenticator> auth, ServerMetrics* metrics)
      : budget_(std::move(budget)), sessions_(sessions), auth_(std::move(auth)),
        metrics_(metrics) {}

  // UNAUTHENTICATED unless the call carries the token (when one is required).
  absl::Status Authorize(grpc::CallbackServerContext* context) const;
  // The caller's session, from the `tensord-session` metadata, after
  // Authorize; renews the session's lease.
  absl::StatusOr<std::shared_ptr<Session>> SessionFor(grpc::CallbackServerContext* context);
  const std::shared_ptr<MemoryBudget>& budget() const { return budget_; }
  ServerMetrics& metrics() const { return *metrics_; }
  SessionRegistry& sessions() const { return *sessions_; }

  // Called once when the server starts draining (SIGTERM): every Execute
  // stream runs what it has queued, fails what arrives later with
  // UNAVAILABLE, and then ends UNAVAILABLE.
  void BeginDrain();

  // Execute streams register themselves while they live (for BeginDrain).
  class Drainable {
   public:
    virtual ~Drainable() = default;
    virtual void Drain() = 0;
  };
  // False when draining has begun: the stream must not start.
  bool Register(std::shared_ptr<Drainable> stream);
  void Unregister(const Drainable* stream);

  grpc::ServerUnaryReactor* OpenSession(grpc::CallbackServerContext* context,
                                        const v1::OpenSessionRequest* request,
                                        v1::OpenSessionResponse* response) override;
  grpc::ServerUnaryReactor* KeepAlive(grpc::CallbackServerContext* context,
                                      const v1::KeepAliveRequest* request,
                                      v1::KeepAliveResponse* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseSessionRequest* request,
                                         v1::CloseSessionResponse* response) override;

  grpc::ServerReadReactor<grpc::ByteBuffer>* Upload(grpc::CallbackServerContext* context,
                                                    grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Download(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;

  grpc::ServerUnaryReactor* GetTensor(grpc::CallbackServerContext* context,
                                      const v1::TensorRef* request,
                                      v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* Free(grpc::CallbackServerContext* context,
                                 const v1::FreeRequest* request,
                                 v1::FreeResponse* response) override;
  grpc::ServerUnaryReactor* ListTensors(grpc::CallbackServerContext* context,
                                        const v1::ListTensorsRequest* request,
                                        v1::ListTensorsResponse* response) override;
  grpc::ServerUnaryReactor* MemoryInfo(grpc::CallbackServerContext* context,
                                       const v1::MemoryInfoRequest* request,
                                       v1::MemoryInfoResponse* response) override;

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* context,
                                   const v1::CreateRequest* request,
                                   v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* ManualSeed(grpc::CallbackServerContext* context,
                                       const v1::ManualSeedRequest* request,
                                       v1::ManualSeedResponse* response) override;
  grpc::ServerUnaryReactor* View(grpc::CallbackServerContext* context,
                                 const v1::ViewRequest* request,
                                 v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* Copy(grpc::CallbackServerContext* context,
                                 const v1::CopyRequest* request,
                                 v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* Op(grpc::CallbackServerContext* context,
                               const v1::OpRequest* request,
                               v1::OpResponse* response) override;

  grpc::ServerUnaryReactor* SetRequiresGrad(grpc::CallbackServerContext* context,
                                            const v1::SetRequiresGradRequest* request,
                                            v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* Detach(grpc::CallbackServerContext* context,
                                   const v1::TensorRef* request,
                                   v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* RetainGrad(grpc::CallbackServerContext* context,
                                       const v1::TensorRef* request,
                                       v1::TensorMeta* response) override;
  grpc::ServerUnaryReactor* GetGrad(grpc::CallbackServerContext* context,
                                    const v1::TensorRef* request,
                                    v1::GetGradResponse* response) override;
  grpc::ServerUnaryReactor* SetGrad(grpc::CallbackServerContext* context,
                                    const v1::SetGradRequest* request,
                                    v1::SetGradResponse* response) override;
  grpc::ServerUnaryReactor* Backward(grpc::CallbackServerContext* context,
                                     const v1::BackwardRequest* request,
                                     v1::BackwardResponse* response) override;
  grpc::ServerUnaryReactor* ZeroGrad(grpc::CallbackServerContext* context,
                                     const v1::ZeroGradRequest* request,
                                     v1::ZeroGradResponse* response) override;
  grpc::ServerUnaryReactor* CreateOptimizer(grpc::CallbackServerContext* context,
                                            const v1::CreateOptimizerRequest* request,
                                            v1::CreateOptimizerResponse* response) override;
  grpc::ServerUnaryReactor* Step(grpc::CallbackServerContext* context,
                                 const v1::StepRequest* request,
                                 v1::StepResponse* response) override;

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Execute(
      grpc::CallbackServerContext* context) override;

 private:
  using Reply = absl::AnyInvocable<void(const CommandResult&)>;
  // The unary path: decodes nothing itself. Finds the caller's session,
  // enqueues `command` on its stream, and when a worker has run it, calls
  // `reply` with the result and finishes the call with the status.
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context,
                                   absl::StatusOr<CommandBody> command, Reply reply);

  const std::shared_ptr<MemoryBudget> budget_;
  SessionRegistry* const sessions_;
  const std::shared_ptr<const TokenAuthenticator> auth_;
  ServerMetrics* const metrics_;
  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<const Drainable*, std::shared_ptr<Drainable>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensord
