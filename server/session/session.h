// Client sessions and the tensors they own.
//
// A Session maps handles to tensors with their autograd state
// (autograd/node.h: Variable), and optimizer ids to optimizers, and owns the
// exec::Stream its commands run on, in issue order (session/commands.h).
// Handles are either chosen by the server (128 random bits, for the unary
// RPCs) or by the client for the outputs of the commands it pipelines
// (PutAs); the session id is the secret, handles are only names inside it.
// A session outlives its connections: its CommandLog lets a client whose
// Execute stream broke open another and carry on where it was (see below).
// A SessionRegistry opens sessions, looks them up by id (renewing their
// lease), closes them, and closes those whose lease ran out, remembering
// the ids of the last few so that a client coming back too late is told
// what happened. Closing a session drops its queued commands and its
// tensors; storage is returned to the MemoryBudget once nothing else (a view
// in another handle, an in-flight download, a running command) references it.
//
// Thread-safety: all three classes are thread-safe. Lock order: registry
// before session; a CommandLog's lock is taken alone; no lock is held while
// a tensor's storage is freed by callers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "autograd/node.h"
#include "core/tensor.h"
#include "exec/scheduler.h"
#include "optim/param_optimizer.h"

namespace tensord {

// 128 bits from the operating system's CSPRNG, as 32 hex digits.
std::string NewRandomId();

// Longest handle a client may choose.
inline constexpr size_t kMaxHandleBytes = 128;

// What each live tensor handle is charged to the session's budget besides
// its storage: the server's bookkeeping for it (map entry, tensor, storage
// and autograd objects; a one-element tensor measured about 490 resident
// bytes in all). So a client that makes a million one-element tensors meets
// --max-memory like any other.
inline constexpr int64_t kHandleBytes = 512;

// What a session's Execute path remembers across its streams, so that a
// client whose connection broke can open a new stream and lose nothing:
//
// - Command ids increase over the session, and the log keeps the largest one
//   read. A command is run once: one that comes again on a later stream (the
//   client resends what it has no reply for) is a duplicate and is skipped.
// - The replies (failures, and the metadata of the tensors a command made)
//   are kept until the client acknowledges them, so that a new stream sends
//   again those the broken one may not have delivered. They are kept as the
//   bytes the RPC layer made of them: this layer knows nothing of protos.
// - One stream is attached at a time. Attaching another supersedes the one
//   before, which may belong to a connection that died without the server
//   noticing; the new one admits commands only once the old one has finished
//   admitting the message it was reading, so ids reach the exec::Stream in order.
//
// Commands queued when a stream breaks keep running: their replies wait here.
class CommandLog {
 public:
  // The attached stream, told when there is news to send or that a newer
  // stream took its place. Called without the log's lock held.
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void Updated() = 0;
    virtual void Superseded() = 0;
  };

  // Replies kept unacknowledged at most; the oldest are dropped beyond it.
  // A client that acknowledges as it goes keeps no more than its window of
  // commands in flight (the Python client's is 4096).
  static constexpr size_t kMaxKeptReplies = 8192;

  struct Attachment {
    uint64_t generation = 0;
    uint64_t last_read = 0;  // the largest command id read, by any stream
  };
  // Makes `listener` the attached stream and tells the one before it, if
  // any, that it was superseded. Waits while that one admits a message.
  Attachment Attach(std::shared_ptr<Listener> listener);
  // Forgets the listener of `generation` if it is still the attached one.
  void Detach(uint64_t generation);

  // Admitting one message's commands, in order:
  //   if (log.BeginAdmit(generation)) { for each command: Admit(id), and
  //   enqueue it if kNew; then EndAdmit(); }
  // BeginAdmit is false for a superseded stream: its message is dropped
  // (the client sends it again on the stream that took over).
  bool BeginAdmit(uint64_t generation);
  void EndAdmit();
  enum class Admission {
    kNew,           // above every id read (or 0, a release): run it
    kDuplicate,     // read before, its reply not yet acknowledged: a resend, skip it
    kAcknowledged,  // at or below the acknowledged id: cannot be a resend
  };
  // REQUIRES: between BeginAdmit (true) and EndAdmit.
  Admission Admit(uint64_t id);

  // A command admitted as kNew has finished (or will never run): `reply` is
  // what the client must be told about it, if anything. `id` 0 for a release.
  void Completed(uint64_t id, std::optional<std::string> reply);
  // The client holds every reply up to command `through`: they are dropped.
  void Acknowledge(uint64_t through);

  struct Progress {
    uint64_t last_read = 0;
    uint64_t completed = 0;     // every admitted command with an id <= this has finished
    uint64_t completions = 0;   // commands with an id that finished, ever
    uint64_t last_reply = 0;    // the id of the newest kept reply (0: none)
    uint64_t acknowledged = 0;
    size_t pending = 0;         // admitted and not finished, releases included
  };
  Progress progress() const;
  // Appends the kept replies of ids above `after` to `out`, and returns the
  // progress they are consistent with.
  Progress RepliesAfter(uint64_t after, std::vector<std::string>* out) const;

 private:
  Progress ProgressLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Listener> listener_ ABSL_GUARDED_BY(mu_);
  bool admitting_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_read_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t completions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<uint64_t, std::string>> replies_ ABSL_GUARDED_BY(mu_);  // by id
};

class Session {
 public:
  // `stream` runs the session's commands (null in unit tests that run none);
  // `budget` is charged for what they allocate.
  Session(std::string id, std::string client_name,
          std::shared_ptr<exec::Stream> stream = nullptr,
          std::shared_ptr<MemoryBudget> budget = nullptr)
      : id_(std::move(id)), client_name_(std::move(client_name)), stream_(std::move(stream)),
        budget_(std::move(budget)) {}

  const std::string& id() const { return id_; }
  const std::string& client_name() const { return client_name_; }
  // Where the session's commands run, in order. Null only in unit tests.
  const std::shared_ptr<exec::Stream>& stream() const { return stream_; }
  const std::shared_ptr<MemoryBudget>& budget() const { return budget_; }

  // Stores `variable` under a new handle. FailedPrecondition once closed.
  absl::StatusOr<std::string> Put(Variable variable);
  absl::StatusOr<std::string> Put(Tensor tensor) { return Put(Variable{std::move(tensor), nullptr}); }
  // InvalidArgument unless every handle is non-empty, at most
  // kMaxHandleBytes long, distinct, and not in use (by a tensor or an
  // optimizer); FailedPrecondition once closed.
  absl::Status CheckNewHandles(const std::vector<std::string>& handles) const;
  // Stores variables[i] under handles[i], all or none, after the checks of
  // CheckNewHandles. REQUIRES: as many handles as variables.
  absl::Status PutAs(const std::vector<std::string>& handles, std::vector<Variable> variables);
  // NotFound for unknown or freed handles.
  absl::StatusOr<Tensor> Get(const std::string& handle) const;
  absl::StatusOr<Variable> GetVariable(const std::string& handle) const;
  // Gives `handle` autograd state (SetRequiresGrad on a tensor that had none).
  absl::StatusOr<Variable> EnsureAutograd(const std::string& handle);
  // Frees all of `handles` (tensor handles or optimizer ids) or, if any is
  // unknown, none of them. Returns how many distinct entries were freed (a
  // handle may be listed twice).
  absl::StatusOr<int64_t> Free(const std::vector<std::string>& handles);
  // Drops the tensors and optimizers of `handles` that exist and skips the
  // others; returns how many were dropped.
  int64_t Release(const std::vector<std::string>& handles);
  std::vector<std::pair<std::string, Variable>> List() const;

  // Stores an optimizer under a new id. FailedPrecondition once closed.
  absl::StatusOr<std::string> PutOptimizer(std::shared_ptr<ParamOptimizer> optimizer);
  // Stores an optimizer under a caller-chosen id (checked as by CheckNewHandles).
  absl::Status PutOptimizerAs(const std::string& id, std::shared_ptr<ParamOptimizer> optimizer);
  // NotFound for unknown or freed ids.
  absl::StatusOr<std::shared_ptr<ParamOptimizer>> GetOptimizer(const std::string& id) const;
  // Bytes of the distinct storages this session's tensors reference.
  int64_t StorageBytes() const;
  int64_t size() const;

  // Closes the stream (queued commands fail with `reason`), drops every
  // tensor and optimizer and refuses new ones; returns how many tensors
  // were dropped.
  int64_t Close(const absl::Status& reason = absl::CancelledError("the session was closed"));
  bool closed() const;

  // The Execute path's memory across streams (see CommandLog). Command
  // ids, which are the exec::Stream's markers, increase over the session's
  // whole life.
  CommandLog& command_log() { return command_log_; }

  // Seeds the session's generator (ManualSeed).
  void ManualSeed(uint64_t seed);
  // A seed for a random op that has none of its own: the next draw of the
  // session's generator once ManualSeed was called, else fresh OS entropy.
  uint64_t NextSeed();

 private:
  // InvalidArgument for a handle CheckNewHandles refuses.
  absl::Status CheckNewHandle(const std::string& handle) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckNewHandlesLocked(const std::vector<std::string>& handles) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What Free and Release take out of the maps, for the caller to destroy
  // once the lock is released.
  struct Dropped {
    std::vector<Variable> tensors;
    std::vector<std::shared_ptr<ParamOptimizer>> optimizers;
    int64_t size() const { return static_cast<int64_t>(tensors.size() + optimizers.size()); }
  };
  // Moves out the entries of `handles` that exist (tensors or optimizers).
  Dropped DropLocked(const std::vector<std::string>& handles) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges (or returns) kHandleBytes per tensor handle.
  absl::Status ChargeHandles(size_t count);
  void ReturnHandles(size_t count);

  const std::string id_;
  const std::string client_name_;
  const std::shared_ptr<exec::Stream> stream_;
  const std::shared_ptr<MemoryBudget> budget_;
  CommandLog command_log_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, Variable> tensors_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<ParamOptimizer>> optimizers_
      ABSL_GUARDED_BY(mu_);
  std::optional<std::mt19937_64> generator_ ABSL_GUARDED_BY(mu_);
};

class SessionRegistry {
 public:
  using Clock = std::chrono::steady_clock;

  // Sessions get a stream of `scheduler` (none when null, in unit tests)
  // and charge `budget`; with `session_max_memory` > 0 each session charges
  // a budget of its own with that limit, whose parent is `budget`.
  explicit SessionRegistry(Clock::duration lease, exec::Scheduler* scheduler = nullptr,
                           std::shared_ptr<MemoryBudget> budget = nullptr,
                           int64_t session_max_memory = 0)
      : lease_(lease), scheduler_(scheduler), budget_(std::move(budget)),
        session_max_memory_(session_max_memory) {}

  Clock::duration lease() const { return lease_; }

  std::shared_ptr<Session> Open(std::string client_name);
  // Finds a live session and renews its lease. NotFound otherwise, saying
  // so when the session is one of the last kRememberedExpired to expire.
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& id);
  // Closes and forgets the session; returns the number of tensors dropped.
  absl::StatusOr<int64_t> Close(const std::string& id,
                                const absl::Status& reason = absl::CancelledError(
                                    "the session was closed"));
  // Closes every session whose lease ended before `now`; returns their ids.
  std::vector<std::string> CloseExpired(Clock::time_point now);
  // Closes every session (queued commands fail with `reason`); returns how many.
  int64_t CloseAll(const absl::Status& reason);
  int64_t size() const;
  // Sessions closed so far, by any of the three above: the reaper gives
  // freed heap back to the system once it sees this change (main.cc).
  int64_t closed_total() const { return closed_total_.load(std::memory_order_relaxed); }

  // How many expired session ids are remembered, for Find's message.
  static constexpr size_t kRememberedExpired = 4096;

  struct Totals {
    double sessions = 0;
    double tensors = 0;
    double queued = 0;  // commands queued or running
  };
  // Sessions, tensor handles and queued commands right now.
  Totals CountTensors() const;

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    Clock::time_point expires;
  };
  const Clock::duration lease_;
  exec::Scheduler* const scheduler_;
  const std::shared_ptr<MemoryBudget> budget_;
  const int64_t session_max_memory_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> sessions_ ABSL_GUARDED_BY(mu_);
  // The ids of the sessions that expired last, oldest first, and when.
  std::deque<std::string> expired_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Clock::time_point> expired_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> closed_total_{0};
};

}  // namespace tensord
