// Client sessions and the tensors they own.
//
// A Session maps handles to tensors with their autograd state
// (autograd/node.h: Variable), and optimizer ids to optimizers, and owns the
// exec::Stream its commands run on, in issue order (session/commands.h).
// Handles are either chosen by the server (128 random bits, for the unary
// RPCs) or by the client for the outputs of the commands it pipelines
// (PutAs); the session id is the secret, handles are only names inside it.
// A SessionRegistry opens sessions, looks them up by id (renewing their
// lease), closes them, and closes those whose lease ran out. Closing a
// session drops its queued commands and its tensors; storage is returned to
// the MemoryBudget once nothing else (a view in another handle, an
// in-flight download, a running command) references it.
//
// Thread-safety: both classes are thread-safe. Lock order: registry before
// session; no lock is held while a tensor's storage is freed by callers.
#pragma once

#include <chrono>
#include <cstdint>
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

  // A session has at most one Execute stream at a time. Command ids, which
  // are its stream's markers, increase over the session's whole life, so a
  // later Execute stream continues from the last id the previous one read.
  // Attach returns that id, or nullopt if a stream is attached already.
  std::optional<uint64_t> AttachExecuteStream();
  void DetachExecuteStream(uint64_t last_command_id);

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
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool execute_attached_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_command_id_ ABSL_GUARDED_BY(mu_) = 0;
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
  // Finds a live session and renews its lease. NotFound otherwise.
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
};

}  // namespace tensord
