// The Execute stream: a session's pipelined commands in, their results out.
//
// The reactor decodes each message's commands and enqueues them, in order,
// on the session's stream with their ids as markers; workers run them and
// hand each result back through an ExecuteLink. Results are batched: while
// one reply is being written, the next collects everything that completes.
// Reading stops while kMaxInFlight commands are read but not yet answered,
// which is the backpressure the proto describes: the client's writes then
// wait on gRPC flow control, and the server holds a bounded queue.
//
// Calling into gRPC: StartRead, StartWrite and Finish are never called with
// a lock held, since gRPC may run a reaction (even OnDone) inline, and never
// after Finish. Threads other than gRPC's reactions (workers, the drain)
// reach the reactor through the link and pin it first: a pinned reactor is
// not finished, so it is not deleted while they use it; the last unpin
// makes a Finish that was requested meanwhile.
#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "rpc/command_codec.h"
#include "rpc/proto_convert.h"
#include "rpc/respond.h"
#include "rpc/service.h"

namespace tensord {
namespace {

// Commands read but not yet answered before the reactor stops reading.
// Enough to keep a stream busy across a round trip (a client pipelining
// 20,000 ops/s over a 1 ms round trip keeps 20 in flight), small enough that
// a flooding client holds a few hundred KiB of queue.
constexpr size_t kMaxInFlight = 1024;
// A larger message is refused: it would bypass the in-flight bound.
constexpr int kMaxCommandsPerMessage = 4096;
// Completions held back, while more of the session's commands are queued
// and the client waits for none of them, before a reply goes out anyway.
// Each reply message costs a Python client far more than a command does.
constexpr size_t kReplyBatch = 64;

class ExecuteReactor;

// How workers and the drain reach a reactor that may be gone.
class ExecuteLink final : public TensordService::Drainable {
 public:
  explicit ExecuteLink(ExecuteReactor* reactor) : reactor_(reactor) {}
  void Completed(uint64_t id, std::optional<v1::CommandResult> result);
  void Drain() override;
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  // The reactor, pinned, or null when it is gone or finishing.
  ExecuteReactor* Pin();

  absl::Mutex mu_;
  ExecuteReactor* reactor_ ABSL_GUARDED_BY(mu_);
};

class ExecuteReactor final
    : public grpc::ServerBidiReactor<v1::ExecuteRequest, v1::ExecuteResponse> {
 public:
  ExecuteReactor(TensordService* service, grpc::CallbackServerContext* context)
      : service_(service), link_(std::make_shared<ExecuteLink>(this)) {
    absl::Status status = Start(context);
    if (!status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        finish_requested_ = finished_ = true;
      }
      Finish(ToGrpcStatus(status));
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed, or the call broke (OnCancel follows)
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        read_closed_ = true;
      }
      Advance();
      return;
    }
    absl::Status status = Guarded([&] { return Enqueue(); });
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;  // request_ may be reused from here on
      if (!status.ok()) {
        read_closed_ = true;
        RequestFinishLocked(ToGrpcStatus(status));
      }
    }
    Advance();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        in_flight_ -= sending_;
        sending_ = 0;
      } else {
        broken_ = true;
        RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED,
                                         "execute: the client went away"));
      }
    }
    Advance();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
      outbox_.clear();
      RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "execute: cancelled"));
    }
    // A broken stream means a client that is gone: drop its queue and its
    // session now rather than when the lease runs out. (Queued tasks are
    // answered with the reason; nobody reads the answers.)
    if (session_ != nullptr) {
      Log(LogLevel::kInfo, "execution stream broke; closing its session",
          {{"session", session_->id().substr(0, 8)}});
      (void)service_->sessions().Close(
          session_->id(), absl::CancelledError("the session's execution stream broke"));
    }
    Advance();
  }

  void OnDone() override {
    link_->Detach();
    service_->Unregister(link_.get());
    DetachSession();
    delete this;
  }

  // A command finished (or was dropped): from a worker, through the link.
  void Completed(uint64_t id, std::optional<v1::CommandResult> result) {
    {
      absl::MutexLock lock(&mu_);
      if (broken_) {
        --in_flight_;
      } else {
        if (result) outbox_.push_back(*std::move(result));
        if (id != 0) completed_ = std::max(completed_, id);
        // A release makes no reply: nothing the client waits for.
        if (result || id != 0) {
          ++done_unsent_;
        } else {
          --in_flight_;
        }
      }
    }
    Advance();
  }

  void Drain() {
    {
      absl::MutexLock lock(&mu_);
      draining_ = true;
    }
    Advance();
  }

  bool Pin() {
    absl::MutexLock lock(&mu_);
    if (finished_) return false;
    ++pins_;
    return true;
  }

  void Unpin() {
    {
      absl::MutexLock lock(&mu_);
      --pins_;
    }
    Advance();
  }

 private:
  absl::Status Start(grpc::CallbackServerContext* context) {
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, service_->SessionFor(context));
    std::optional<uint64_t> last_id = session->AttachExecuteStream();
    if (!last_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", session->id().substr(0, 8), "... already has an Execute stream"));
    }
    session_ = std::move(session);
    last_id_ = *last_id;
    if (!service_->Register(link_)) {
      return absl::UnavailableError("the server is shutting down");
    }
    {
      absl::MutexLock lock(&mu_);
      reading_ = true;
    }
    StartRead(&request_);
    return absl::OkStatus();
  }

  // Queues the commands of request_ on the session's stream.
  absl::Status Enqueue() {
    if (request_.commands_size() > kMaxCommandsPerMessage) {
      return absl::InvalidArgumentError(
          absl::StrCat("execute: a message may carry at most ", kMaxCommandsPerMessage,
                       " commands, this one has ", request_.commands_size()));
    }
    // The lease: an Execute stream in use keeps its session alive.
    RETURN_IF_ERROR(service_->sessions().Find(session_->id()).status());
    bool draining = false;
    {
      absl::MutexLock lock(&mu_);
      in_flight_ += static_cast<size_t>(request_.commands_size());
      draining = draining_;
      flush_through_ = std::max(flush_through_, request_.flush_through());
    }
    const std::shared_ptr<exec::Stream>& stream = session_->stream();
    for (const v1::Command& proto : request_.commands()) {
      const uint64_t id = proto.id();
      const uint64_t last_id = last_id_.load();
      if (id == 0 ? proto.kind_case() != v1::Command::kRelease : id <= last_id) {
        // The ids order the client's bookkeeping; without them nothing that
        // follows can be answered meaningfully.
        return absl::InvalidArgumentError(
            id == 0 ? std::string("execute: only release commands may have id 0")
                    : absl::StrCat("execute: command ids must increase over the session, got ",
                                   id, " after ", last_id));
      }
      if (id != 0) last_id_.store(id);
      absl::StatusOr<Command> command = draining
          ? absl::UnavailableError("the server is shutting down: command not run")
          : DecodeCommand(proto);
      // Even a command that cannot run goes through the stream, so that its
      // answer comes after those of the commands before it.
      stream->Enqueue(
          [link = link_, session = session_, metrics = &service_->metrics(), id,
           command = std::move(command)](const absl::Status& runnable) mutable {
            absl::Status status = runnable.ok() ? command.status() : runnable;
            v1::CommandResult result;
            if (status.ok()) {
              absl::StatusOr<CommandResult> done =
                  Guarded([&] { return tensord::Execute(*session, *command); });
              if (done.ok()) {
                FillOutputs(*done, result.mutable_outputs());
              } else {
                status = done.status();
              }
              metrics->RecordCommand(*command, status);
            }
            command = absl::CancelledError("done");  // free the command before answering
            if (!status.ok()) {
              result.set_code(static_cast<int32_t>(status.code()));
              result.set_message(std::string(status.message()));
            }
            const bool answer = !status.ok() || result.outputs_size() > 0;
            if (answer) result.set_id(id);
            link->Completed(id, answer ? std::optional(std::move(result)) : std::nullopt);
          },
          id);
    }
    return absl::OkStatus();
  }

  // REQUIRES: mu_. Finish is made as soon as no pin or write is pending.
  void RequestFinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = std::move(status);
  }

  // Starts whatever the state calls for: a write of the pending results, a
  // read when below the in-flight bound, or the Finish.
  void Advance() {
    bool read = false;
    bool write = false;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      const bool news = !outbox_.empty() || completed_ > sent_completed_;
      // Replies go out when the client waits for one of them, when the
      // session's queue is empty (the last reply the client can wait for),
      // or when kReplyBatch have collected.
      const bool due = news && (flush_through_ > sent_completed_ || done_unsent_ >= kReplyBatch ||
                                read_closed_ || draining_ || session_->stream()->queued() == 0);
      if (!writing_ && !broken_ && due) {
        response_.Clear();
        for (v1::CommandResult& result : outbox_) *response_.add_results() = std::move(result);
        outbox_.clear();
        response_.set_completed(completed_);
        sent_completed_ = completed_;
        sending_ = done_unsent_;
        done_unsent_ = 0;
        writing_ = write = true;
      }
      if (!reading_ && !read_closed_ && !draining_ && !finish_requested_ &&
          in_flight_ < kMaxInFlight) {
        reading_ = read = true;
      }
      if ((read_closed_ || draining_) && in_flight_ == 0 && !writing_) {
        RequestFinishLocked(draining_ ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                     "the server is shutting down: the commands "
                                                     "it had read have run; later ones did not")
                                      : grpc::Status::OK);
      }
      if (finish_requested_ && !writing_ && pins_ == 0 && !read) {
        finished_ = finish = true;
        status = finish_status_;
      }
    }
    if (write) StartWrite(&response_);
    if (read) StartRead(&request_);
    if (finish) {
      // The session may take a new stream as soon as the client sees this one end.
      DetachSession();
      Finish(status);  // `this` may be gone from here on
    }
  }

  void DetachSession() {
    absl::MutexLock lock(&detach_mu_);
    if (session_ != nullptr && !detached_) {
      const uint64_t last_id = last_id_.load();
      session_->DetachExecuteStream(last_id);
      // Transfers waiting for commands this stream never read would wait forever.
      session_->stream()->AbandonMarkersAbove(
          last_id, absl::UnavailableError(absl::StrCat(
                       "the execution stream ended after command ", last_id,
                       ": the command this transfer waits for was never run")));
    }
    detached_ = true;
  }

  TensordService* const service_;
  const std::shared_ptr<ExecuteLink> link_;
  std::shared_ptr<Session> session_;  // set by Start
  std::atomic<uint64_t> last_id_{0};  // written by OnReadDone only
  absl::Mutex detach_mu_;
  bool detached_ ABSL_GUARDED_BY(detach_mu_) = false;
  v1::ExecuteRequest request_;        // owned by the read in flight while reading_
  v1::ExecuteResponse response_;      // owned by the write in flight while writing_

  absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;  // no more reads: half-closed or failed
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;       // cancelled, or a write failed
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int pins_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;      // read, not yet covered by a reply
  size_t done_unsent_ ABSL_GUARDED_BY(mu_) = 0;    // completed, not in a write yet
  size_t sending_ ABSL_GUARDED_BY(mu_) = 0;        // covered by the write in flight
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_through_ ABSL_GUARDED_BY(mu_) = 0;  // the client waits up to here
  std::vector<v1::CommandResult> outbox_ ABSL_GUARDED_BY(mu_);
};

ExecuteReactor* ExecuteLink::Pin() {
  absl::MutexLock lock(&mu_);
  if (reactor_ == nullptr || !reactor_->Pin()) return nullptr;
  return reactor_;
}

void ExecuteLink::Completed(uint64_t id, std::optional<v1::CommandResult> result) {
  ExecuteReactor* reactor = Pin();
  if (reactor == nullptr) return;
  reactor->Completed(id, std::move(result));
  reactor->Unpin();
}

void ExecuteLink::Drain() {
  ExecuteReactor* reactor = Pin();
  if (reactor == nullptr) return;
  reactor->Drain();
  reactor->Unpin();
}

}  // namespace

grpc::ServerBidiReactor<v1::ExecuteRequest, v1::ExecuteResponse>* TensordService::Execute(
    grpc::CallbackServerContext* context) {
  return new ExecuteReactor(this, context);
}

}  // namespace tensord
