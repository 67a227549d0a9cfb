// Client sessions and the tensors they own.
//
// A Session maps unguessable handles to tensors with their autograd state
// (autograd/node.h: Variable), and optimizer ids to optimizers. A SessionRegistry opens
// sessions, looks them up by id (renewing their lease), closes them, and
// closes those whose lease ran out. Closing a session drops its tensors;
// storage is returned to the MemoryBudget once nothing else (a view in
// another handle, an in-flight download) references it.
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
#include "optim/param_optimizer.h"

namespace tensord {

// 128 bits from the operating system's CSPRNG, as 32 hex digits.
std::string NewRandomId();

class Session {
 public:
  Session(std::string id, std::string client_name)
      : id_(std::move(id)), client_name_(std::move(client_name)) {}

  const std::string& id() const { return id_; }
  const std::string& client_name() const { return client_name_; }

  // Stores `variable` under a new handle. FailedPrecondition once closed.
  absl::StatusOr<std::string> Put(Variable variable);
  absl::StatusOr<std::string> Put(Tensor tensor) { return Put(Variable{std::move(tensor), nullptr}); }
  // NotFound for unknown or freed handles.
  absl::StatusOr<Tensor> Get(const std::string& handle) const;
  absl::StatusOr<Variable> GetVariable(const std::string& handle) const;
  // Gives `handle` autograd state (SetRequiresGrad on a tensor that had none).
  absl::StatusOr<Variable> EnsureAutograd(const std::string& handle);
  // Frees all of `handles` (tensor handles or optimizer ids) or, if any is
  // unknown, none of them. Returns how many distinct entries were freed (a
  // handle may be listed twice).
  absl::StatusOr<int64_t> Free(const std::vector<std::string>& handles);
  std::vector<std::pair<std::string, Variable>> List() const;

  // Stores an optimizer under a new id. FailedPrecondition once closed.
  absl::StatusOr<std::string> PutOptimizer(std::shared_ptr<ParamOptimizer> optimizer);
  // NotFound for unknown or freed ids.
  absl::StatusOr<std::shared_ptr<ParamOptimizer>> GetOptimizer(const std::string& id) const;
  // Bytes of the distinct storages this session's tensors reference.
  int64_t StorageBytes() const;
  int64_t size() const;

  // Drops every tensor and optimizer and refuses new ones; returns how many
  // tensors were dropped.
  int64_t Close();

  // Seeds the session's generator (ManualSeed).
  void ManualSeed(uint64_t seed);
  // A seed for a random op that has none of its own: the next draw of the
  // session's generator once ManualSeed was called, else fresh OS entropy.
  uint64_t NextSeed();

 private:
  const std::string id_;
  const std::string client_name_;
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

  explicit SessionRegistry(Clock::duration lease) : lease_(lease) {}

  Clock::duration lease() const { return lease_; }

  std::shared_ptr<Session> Open(std::string client_name);
  // Finds a live session and renews its lease. NotFound otherwise.
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& id);
  // Closes and forgets the session; returns the number of tensors dropped.
  absl::StatusOr<int64_t> Close(const std::string& id);
  // Closes every session whose lease ended before `now`; returns their ids.
  std::vector<std::string> CloseExpired(Clock::time_point now);
  int64_t size() const;

  struct Totals {
    double sessions = 0;
    double tensors = 0;
  };
  // Sessions and tensor handles held right now.
  Totals CountTensors() const;

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    Clock::time_point expires;
  };
  const Clock::duration lease_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensord
