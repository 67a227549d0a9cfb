// The Execute stream: a session's pipelined commands in, their results out.
//
// The reactor decodes each message's commands and enqueues them, in order,
// on the session's stream with their ids as markers; workers run them and
// record each result in the session's CommandLog (session/session.h), which
// tells the attached stream, through an ExecuteLink, that there is news.
// Results are batched: while one reply is being written, the next collects
// everything that completes. Reading stops while kMaxInFlight commands are
// queued or answered but not yet written, which is the backpressure the
// proto describes: the client's writes then wait on gRPC flow control, and
// the server holds a bounded queue.
//
// Resuming. A session outlives its streams: when one breaks, what it had
// read keeps running and the replies wait in the log. The client opens a
// new stream, which takes over from the old one (the server may not even
// know yet that the old connection is dead), sends again every command
// whose reply it lacks and acknowledges the replies it has; the log skips
// the commands it has already read and the new stream sends the replies
// the client has not acknowledged. So every command runs exactly once and
// every reply arrives, whatever the connection did. A stream the server
// ends itself carries the trailing metadata kStreamEndKey: a client resumes
// only a stream that broke without it.
//
// Calling into gRPC: StartRead, StartWrite and Finish are never called with
// a lock held, since gRPC may run a reaction (even OnDone) inline, and never
// after Finish. Threads other than gRPC's reactions (workers, the drain, a
// stream taking over) reach the reactor through the link and pin it first:
// a pinned reactor is not finished, so it is not deleted while they use it;
// the last unpin makes a Finish that was requested meanwhile.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "rpc/chunk_codec.h"
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

// How workers, the drain and the session's CommandLog reach a reactor that
// may be gone.
class ExecuteLink final : public TensordService::Drainable, public CommandLog::Listener {
 public:
  explicit ExecuteLink(ExecuteReactor* reactor) : reactor_(reactor) {}
  void Updated() override;
  void Superseded() override;
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

// Reads raw messages and parses them itself (see service.h), so that a
// malformed ExecuteRequest ends the stream with INVALID_ARGUMENT instead of
// reading as the client half-closing.
class ExecuteReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  ExecuteReactor(TensordService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context), link_(std::make_shared<ExecuteLink>(this)) {
    absl::Status status = Start();
    if (!status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        finish_requested_ = finished_ = true;
      }
      DetachSession();
      context_->AddTrailingMetadata(kStreamEndKey, "refused");
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
    absl::Status status = Guarded([&] {
      RETURN_IF_ERROR(DecodeMessage(request_bytes_, &request_));
      request_bytes_.Clear();
      return Enqueue();
    });
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;  // request_bytes_ and request_ may be reused from here on
      if (!status.ok()) {
        read_closed_ = true;
        RequestFinishLocked(ToGrpcStatus(status), "error");
      }
    }
    Advance();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        written_completions_ = sending_completions_;
      } else {
        broken_ = true;
        RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED,
                                         "execute: the client went away"), "broken");
      }
    }
    Advance();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
      RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "execute: cancelled"), "broken");
    }
    // The session stays: its client may be back within the lease on a new
    // stream (a dropped link), or not (a crashed client), and then the lease
    // frees everything. Its queued commands keep running meanwhile.
    if (session_ != nullptr) {
      Log(LogLevel::kInfo, "execution stream broke; the session stays for its lease",
          {{"session", session_->id().substr(0, 8)}});
    }
    Advance();
  }

  void OnDone() override {
    link_->Detach();
    service_->Unregister(link_.get());
    DetachSession();
    delete this;
  }

  // The log has news (a command finished): from a worker, through the link.
  void Updated() { Advance(); }

  // A newer stream of the session took over: end this one.
  void Supersede() {
    {
      absl::MutexLock lock(&mu_);
      superseded_ = true;
      read_closed_ = true;
      RequestFinishLocked(grpc::Status(grpc::StatusCode::ABORTED,
                                       "execute: a newer Execute stream of this session took over"),
                          "superseded");
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
  absl::Status Start() {
    ASSIGN_OR_RETURN(session_, service_->SessionFor(context_));
    if (!service_->Register(link_)) {
      return absl::UnavailableError("the server is shutting down");
    }
    const CommandLog::Attachment attachment = session_->command_log().Attach(link_);
    generation_ = attachment.generation;
    // Replies after the acknowledged ones go out again: the client may never
    // have received them. It ignores those it has.
    const CommandLog::Progress progress = session_->command_log().progress();
    bool resumed = false;
    {
      absl::MutexLock lock(&mu_);
      attached_ = true;
      sent_reply_after_ = sent_completed_ = progress.acknowledged;
      written_completions_ = progress.completions;
      resumed = progress.last_read > 0;
      reading_ = true;
    }
    if (resumed) {
      Log(LogLevel::kInfo, "execution stream resumed",
          {{"session", session_->id().substr(0, 8)},
           {"last_read", absl::StrCat(progress.last_read)},
           {"completed", absl::StrCat(progress.completed)},
           {"acknowledged", absl::StrCat(progress.acknowledged)}});
    }
    StartRead(&request_bytes_);
    Advance();  // the replies the client may have missed
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
    CommandLog& log = session_->command_log();
    if (!log.BeginAdmit(generation_)) return absl::OkStatus();  // superseded: dropped
    absl::Cleanup end_admit = [&log] { log.EndAdmit(); };
    log.Acknowledge(request_.acknowledged());
    bool draining = false;
    {
      absl::MutexLock lock(&mu_);
      draining = draining_;
      flush_through_ = std::max(flush_through_, request_.flush_through());
    }
    const std::shared_ptr<exec::Stream>& stream = session_->stream();
    for (const v1::Command& proto : request_.commands()) {
      const uint64_t id = proto.id();
      // The ids order the client's bookkeeping; without them nothing that
      // follows can be answered meaningfully.
      if (id == 0 && proto.kind_case() != v1::Command::kRelease) {
        return absl::InvalidArgumentError("execute: only release commands may have id 0");
      }
      if (id != 0 && id <= stream_last_id_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "execute: command ids must increase over the session, got ", id, " after ",
            stream_last_id_));
      }
      if (id != 0) stream_last_id_ = id;
      switch (log.Admit(id)) {
        case CommandLog::Admission::kDuplicate:
          continue;  // read before: a resend after a reconnect
        case CommandLog::Admission::kAcknowledged:
          return absl::InvalidArgumentError(absl::StrCat(
              "execute: command ids must increase over the session, got ", id,
              ", at or below the acknowledged ", log.progress().acknowledged));
        case CommandLog::Admission::kNew:
          break;
      }
      absl::StatusOr<Command> command = draining
          ? absl::UnavailableError("the server is shutting down: command not run")
          : DecodeCommand(proto);
      // Even a command that cannot run goes through the stream, so that its
      // answer comes after those of the commands before it.
      stream->Enqueue(
          [session = session_, metrics = &service_->metrics(), id,
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
            std::optional<std::string> reply;
            if (!status.ok() || result.outputs_size() > 0) {
              result.set_id(id);
              reply = result.SerializeAsString();
            }
            session->command_log().Completed(id, std::move(reply));
          },
          id);
    }
    return absl::OkStatus();
  }

  // REQUIRES: mu_. Finish is made as soon as no pin or write is pending.
  // `why` goes to the client as kStreamEndKey: the server ended the stream.
  void RequestFinishLocked(grpc::Status status, const char* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = std::move(status);
    finish_why_ = why;
  }

  // Starts whatever the state calls for: a write of the pending results, a
  // read when below the in-flight bound, or the Finish.
  void Advance() {
    bool read = false;
    bool write = false;
    bool finish = false;
    grpc::Status status;
    const char* why = "";
    std::vector<std::string> replies;
    uint64_t completed = 0;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || !attached_) return;
      CommandLog& log = session_->command_log();
      const CommandLog::Progress progress = log.progress();
      const bool news =
          progress.last_reply > sent_reply_after_ || progress.completed > sent_completed_;
      // Replies go out when the client waits for one of them, when the
      // session's queue is empty (the last reply the client can wait for),
      // or when kReplyBatch have collected.
      const bool due =
          news && (flush_through_ > sent_completed_ ||
                   progress.completions - written_completions_ >= kReplyBatch || read_closed_ ||
                   draining_ || session_->stream()->queued() == 0);
      if (!writing_ && !broken_ && !superseded_ && due) {
        const CommandLog::Progress taken = log.RepliesAfter(sent_reply_after_, &replies);
        sent_reply_after_ = std::max(sent_reply_after_, taken.last_reply);
        sent_completed_ = std::max(sent_completed_, taken.completed);
        completed = sent_completed_;
        sending_completions_ = taken.completions;
        writing_ = write = true;
      }
      // Read, not yet answered in a finished write: queued or running, or
      // finished with the reply still to be written.
      const uint64_t in_flight = progress.pending + (progress.completions - written_completions_);
      if (!reading_ && !read_closed_ && !draining_ && !finish_requested_ &&
          in_flight < kMaxInFlight) {
        reading_ = read = true;
      }
      if ((read_closed_ || draining_) && !superseded_ && in_flight == 0 && !writing_) {
        RequestFinishLocked(draining_ ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                     "the server is shutting down: the commands "
                                                     "it had read have run; later ones did not")
                                      : grpc::Status::OK,
                            draining_ ? "draining" : "done");
      }
      if (finish_requested_ && !writing_ && pins_ == 0 && !read) {
        finished_ = finish = true;
        status = finish_status_;
        why = finish_why_;
      }
    }
    if (write) {
      response_.Clear();
      for (const std::string& reply : replies) {
        if (!response_.add_results()->ParseFromString(reply)) {
          Log(LogLevel::kError, "execute: a kept reply does not parse", {});
          response_.mutable_results()->RemoveLast();
        }
      }
      response_.set_completed(completed);
      response_bytes_ = EncodeMessage(response_);
      StartWrite(&response_bytes_);
    }
    if (read) StartRead(&request_bytes_);
    if (finish) {
      // The session may take a new stream as soon as the client sees this one end.
      DetachSession();
      context_->AddTrailingMetadata(kStreamEndKey, why);
      Finish(status);  // `this` may be gone from here on
    }
  }

  void DetachSession() {
    bool ended_here = false;  // by the client's half-close or by the server, not by a break
    {
      absl::MutexLock lock(&mu_);
      ended_here = !broken_ && !superseded_;
    }
    absl::MutexLock lock(&detach_mu_);
    if (session_ != nullptr && !detached_) {
      session_->command_log().Detach(generation_);
      // A stream that ended (the client half-closed it, or the server ended
      // it: draining, an error) brings no more commands: transfers waiting
      // for commands it never read would wait forever. (A broken or
      // superseded stream's commands may still come, resent on a new one.)
      if (ended_here) {
        const uint64_t last_read = session_->command_log().progress().last_read;
        session_->stream()->AbandonMarkersAbove(
            last_read, absl::UnavailableError(absl::StrCat(
                           "the execution stream ended after command ", last_read,
                           ": the command this transfer waits for was never run")));
      }
    }
    detached_ = true;
  }

  TensordService* const service_;
  grpc::CallbackServerContext* const context_;
  const std::shared_ptr<ExecuteLink> link_;
  std::shared_ptr<Session> session_;  // set by Start
  uint64_t generation_ = 0;           // set by Start: this stream's in the session's log
  uint64_t stream_last_id_ = 0;       // the last id read on this stream; OnReadDone only
  absl::Mutex detach_mu_;
  bool detached_ ABSL_GUARDED_BY(detach_mu_) = false;
  grpc::ByteBuffer request_bytes_;    // owned by the read in flight while reading_
  v1::ExecuteRequest request_;        // request_bytes_, parsed by OnReadDone
  v1::ExecuteResponse response_;      // built by Advance, then serialized into
  grpc::ByteBuffer response_bytes_;   // owned by the write in flight while writing_

  absl::Mutex mu_;
  bool attached_ ABSL_GUARDED_BY(mu_) = false;     // Start succeeded
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;  // no more reads: half-closed or failed
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;       // cancelled, or a write failed
  bool superseded_ ABSL_GUARDED_BY(mu_) = false;   // a newer stream took over
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int pins_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  const char* finish_why_ ABSL_GUARDED_BY(mu_) = "";
  // What this stream has sent: the newest reply, and `completed`.
  uint64_t sent_reply_after_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_completed_ ABSL_GUARDED_BY(mu_) = 0;
  // The log's completions covered by the last finished write, and by the one in flight.
  uint64_t written_completions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sending_completions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_through_ ABSL_GUARDED_BY(mu_) = 0;  // the client waits up to here
};

ExecuteReactor* ExecuteLink::Pin() {
  absl::MutexLock lock(&mu_);
  if (reactor_ == nullptr || !reactor_->Pin()) return nullptr;
  return reactor_;
}

void ExecuteLink::Updated() {
  ExecuteReactor* reactor = Pin();
  if (reactor == nullptr) return;
  reactor->Updated();
  reactor->Unpin();
}

void ExecuteLink::Superseded() {
  ExecuteReactor* reactor = Pin();
  if (reactor == nullptr) return;
  reactor->Supersede();
  reactor->Unpin();
}

void ExecuteLink::Drain() {
  ExecuteReactor* reactor = Pin();
  if (reactor == nullptr) return;
  reactor->Drain();
  reactor->Unpin();
}

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TensordService::Execute(
    grpc::CallbackServerContext* context) {
  return new ExecuteReactor(this, context);
}

}  // namespace tensord
