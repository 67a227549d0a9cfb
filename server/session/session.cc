#include "session/session.h"

#include <sys/random.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "core/create.h"

namespace tensord {

std::string NewRandomId() {
  char bytes[16];
  size_t filled = 0;
  while (filled < sizeof bytes) {
    const ssize_t n = getrandom(bytes + filled, sizeof bytes - filled, 0);
    if (n > 0) filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof bytes));
}

namespace {
absl::Status UnknownHandle(const std::string& handle) {
  return absl::NotFoundError(absl::StrCat("no tensor with handle '", handle,
                                          "' in this session (never created, freed, or "
                                          "owned by another session)"));
}
}  // namespace

// ---- CommandLog -------------------------------------------------------------

CommandLog::Attachment CommandLog::Attach(std::shared_ptr<Listener> listener) {
  std::shared_ptr<Listener> previous;
  Attachment attachment;
  {
    absl::MutexLock lock(&mu_);
    // Ids reach the exec::Stream in order only if the previous stream is not
    // between reading last_read_ and enqueueing the commands it admitted.
    mu_.Await(absl::Condition(
        +[](bool* admitting) { return !*admitting; }, &admitting_));
    previous = std::exchange(listener_, std::move(listener));
    attachment.generation = ++generation_;
    attachment.last_read = last_read_;
  }
  if (previous != nullptr) previous->Superseded();
  return attachment;
}

void CommandLog::Detach(uint64_t generation) {
  std::shared_ptr<Listener> detached;  // released outside the lock
  absl::MutexLock lock(&mu_);
  if (generation == generation_) detached = std::move(listener_);
}

bool CommandLog::BeginAdmit(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return false;
  admitting_ = true;
  return true;
}

void CommandLog::EndAdmit() {
  absl::MutexLock lock(&mu_);
  admitting_ = false;
}

CommandLog::Admission CommandLog::Admit(uint64_t id) {
  absl::MutexLock lock(&mu_);
  if (id != 0 && id <= acknowledged_) return Admission::kAcknowledged;
  if (id != 0 && id <= last_read_) return Admission::kDuplicate;
  if (id != 0) last_read_ = id;
  ++pending_;
  return Admission::kNew;
}

void CommandLog::Completed(uint64_t id, std::optional<std::string> reply) {
  std::shared_ptr<Listener> listener;
  {
    absl::MutexLock lock(&mu_);
    --pending_;
    if (id != 0) {
      completed_ = std::max(completed_, id);
      ++completions_;
    }
    if (reply.has_value()) {
      replies_.emplace_back(id, *std::move(reply));
      if (replies_.size() > kMaxKeptReplies) replies_.pop_front();
    }
    listener = listener_;
  }
  if (listener != nullptr) listener->Updated();
}

void CommandLog::Acknowledge(uint64_t through) {
  std::deque<std::pair<uint64_t, std::string>> dropped;  // freed outside the lock
  absl::MutexLock lock(&mu_);
  // Nothing above `completed_` has a reply yet: a larger value acknowledges
  // no reply of a command still to come.
  acknowledged_ = std::max(acknowledged_, std::min(through, completed_));
  while (!replies_.empty() && replies_.front().first <= acknowledged_) {
    dropped.push_back(std::move(replies_.front()));
    replies_.pop_front();
  }
}

CommandLog::Progress CommandLog::ProgressLocked() const {
  Progress progress;
  progress.last_read = last_read_;
  progress.completed = completed_;
  progress.completions = completions_;
  progress.last_reply = replies_.empty() ? 0 : replies_.back().first;
  progress.acknowledged = acknowledged_;
  progress.pending = pending_;
  return progress;
}

CommandLog::Progress CommandLog::progress() const {
  absl::MutexLock lock(&mu_);
  return ProgressLocked();
}

CommandLog::Progress CommandLog::RepliesAfter(uint64_t after, std::vector<std::string>* out) const {
  absl::MutexLock lock(&mu_);
  // Replies are in id order: skip to the first one after `after`.
  auto it = std::upper_bound(replies_.begin(), replies_.end(), after,
                             [](uint64_t id, const auto& reply) { return id < reply.first; });
  for (; it != replies_.end(); ++it) out->push_back(it->second);
  return ProgressLocked();
}

// ---- Session ------------------------------------------------------------------

absl::Status Session::ChargeHandles(size_t count) {
  if (budget_ == nullptr || count == 0) return absl::OkStatus();
  return budget_->Reserve(static_cast<int64_t>(count) * kHandleBytes,
                          count == 1 ? "a tensor handle" : "tensor handles");
}

void Session::ReturnHandles(size_t count) {
  if (budget_ != nullptr && count > 0) budget_->Release(static_cast<int64_t>(count) * kHandleBytes);
}

absl::StatusOr<std::string> Session::Put(Variable variable) {
  std::string handle = NewRandomId();
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id_, " is closed"));
  }
  RETURN_IF_ERROR(ChargeHandles(1));
  tensors_.emplace(handle, std::move(variable));
  return handle;
}

absl::Status Session::CheckNewHandle(const std::string& handle) const {
  if (handle.empty() || handle.size() > kMaxHandleBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a handle must have 1 to ", kMaxHandleBytes, " bytes, got ", handle.size()));
  }
  if (tensors_.contains(handle) || optimizers_.contains(handle)) {
    return absl::InvalidArgumentError(
        absl::StrCat("handle '", handle, "' is already in use in this session"));
  }
  return absl::OkStatus();
}

absl::Status Session::CheckNewHandlesLocked(const std::vector<std::string>& handles) const {
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id_, " is closed"));
  }
  for (size_t i = 0; i < handles.size(); ++i) {
    RETURN_IF_ERROR(CheckNewHandle(handles[i]));
    for (size_t j = 0; j < i; ++j) {
      if (handles[j] == handles[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("handle '", handles[i], "' is named twice for one command's outputs"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Session::CheckNewHandles(const std::vector<std::string>& handles) const {
  absl::MutexLock lock(&mu_);
  return CheckNewHandlesLocked(handles);
}

absl::Status Session::PutAs(const std::vector<std::string>& handles,
                            std::vector<Variable> variables) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckNewHandlesLocked(handles));
  RETURN_IF_ERROR(ChargeHandles(handles.size()));
  for (size_t i = 0; i < handles.size(); ++i) {
    tensors_.emplace(handles[i], std::move(variables[i]));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Session::Get(const std::string& handle) const {
  absl::MutexLock lock(&mu_);
  auto it = tensors_.find(handle);
  if (it == tensors_.end()) return UnknownHandle(handle);
  return it->second.tensor;
}

absl::StatusOr<Variable> Session::GetVariable(const std::string& handle) const {
  absl::MutexLock lock(&mu_);
  auto it = tensors_.find(handle);
  if (it == tensors_.end()) return UnknownHandle(handle);
  return it->second;
}

absl::StatusOr<Variable> Session::EnsureAutograd(const std::string& handle) {
  absl::MutexLock lock(&mu_);
  auto it = tensors_.find(handle);
  if (it == tensors_.end()) return UnknownHandle(handle);
  if (it->second.autograd == nullptr) {
    it->second.autograd = std::make_shared<AutogradMeta>(false, nullptr, 0);
  }
  return it->second;
}

absl::StatusOr<std::string> Session::PutOptimizer(std::shared_ptr<ParamOptimizer> optimizer) {
  std::string id = NewRandomId();
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id_, " is closed"));
  }
  optimizers_.emplace(id, std::move(optimizer));
  return id;
}

absl::Status Session::PutOptimizerAs(const std::string& id,
                                     std::shared_ptr<ParamOptimizer> optimizer) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id_, " is closed"));
  }
  RETURN_IF_ERROR(CheckNewHandle(id));
  optimizers_.emplace(id, std::move(optimizer));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ParamOptimizer>> Session::GetOptimizer(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = optimizers_.find(id);
  if (it == optimizers_.end()) {
    return absl::NotFoundError(absl::StrCat("no optimizer with id '", id,
                                            "' in this session (never created or freed)"));
  }
  return it->second;
}

Session::Dropped Session::DropLocked(const std::vector<std::string>& handles) {
  Dropped dropped;
  for (const std::string& handle : handles) {
    if (auto it = tensors_.find(handle); it != tensors_.end()) {
      dropped.tensors.push_back(std::move(it->second));
      tensors_.erase(it);
    } else if (auto opt = optimizers_.find(handle); opt != optimizers_.end()) {
      dropped.optimizers.push_back(std::move(opt->second));
      optimizers_.erase(opt);
    }  // else: unknown, or listed twice
  }
  ReturnHandles(dropped.tensors.size());
  return dropped;
}

absl::StatusOr<int64_t> Session::Free(const std::vector<std::string>& handles) {
  // Entries are moved out under the lock and destroyed after it, so freeing
  // a large storage never blocks other requests of this session.
  Dropped dropped;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& handle : handles) {
      if (!tensors_.contains(handle) && !optimizers_.contains(handle)) {
        return absl::NotFoundError(absl::StrCat("cannot free unknown handle '", handle, "'"));
      }
    }
    dropped = DropLocked(handles);
  }
  return dropped.size();
}

int64_t Session::Release(const std::vector<std::string>& handles) {
  Dropped dropped;  // destroyed after the lock, as in Free
  {
    absl::MutexLock lock(&mu_);
    dropped = DropLocked(handles);
  }
  return dropped.size();
}

std::vector<std::pair<std::string, Variable>> Session::List() const {
  absl::MutexLock lock(&mu_);
  return {tensors_.begin(), tensors_.end()};
}

int64_t Session::StorageBytes() const {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<const Storage*> seen;
  int64_t bytes = 0;
  for (const auto& [handle, variable] : tensors_) {
    const Tensor& tensor = variable.tensor;
    if (seen.insert(tensor.storage().get()).second) bytes += tensor.storage()->nbytes();
  }
  return bytes;
}

int64_t Session::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(tensors_.size());
}

int64_t Session::Close(const absl::Status& reason) {
  // The stream first: its queued commands are dropped before the tensors
  // they name, and a command running now finds the session closed when it
  // registers its outputs.
  if (stream_ != nullptr) stream_->Close(reason);
  absl::flat_hash_map<std::string, Variable> dropped;
  absl::flat_hash_map<std::string, std::shared_ptr<ParamOptimizer>> dropped_optimizers;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    dropped.swap(tensors_);
    ReturnHandles(dropped.size());
    dropped_optimizers.swap(optimizers_);
  }
  return static_cast<int64_t>(dropped.size());
}

bool Session::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

void Session::ManualSeed(uint64_t seed) {
  absl::MutexLock lock(&mu_);
  generator_.emplace(seed);
}

uint64_t Session::NextSeed() {
  {
    absl::MutexLock lock(&mu_);
    if (generator_) return (*generator_)();
  }
  return RandomSeed();
}

std::shared_ptr<Session> SessionRegistry::Open(std::string client_name) {
  std::shared_ptr<MemoryBudget> budget = budget_;
  if (session_max_memory_ > 0 && budget_ != nullptr) {
    budget = std::make_shared<MemoryBudget>(session_max_memory_, budget_, "--session-max-memory");
  }
  auto session = std::make_shared<Session>(
      NewRandomId(), std::move(client_name),
      scheduler_ != nullptr ? scheduler_->NewStream() : nullptr, std::move(budget));
  absl::MutexLock lock(&mu_);
  sessions_.emplace(session->id(), Entry{session, Clock::now() + lease_});
  return session;
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Find(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    if (auto expired = expired_.find(id); expired != expired_.end()) {
      const double ago = std::chrono::duration<double>(Clock::now() - expired->second).count();
      return absl::NotFoundError(absl::StrFormat(
          "session '%s' expired %.1f s ago: nothing renewed its %g s lease (no call, keep-alive "
          "or command reached the server), so the server closed it and freed its tensors",
          id, ago, std::chrono::duration<double>(lease_).count()));
    }
    return absl::NotFoundError(absl::StrCat(
        "unknown session '", id, "' (closed, expired after its lease, or never opened)"));
  }
  it->second.expires = Clock::now() + lease_;
  return it->second.session;
}

absl::StatusOr<int64_t> SessionRegistry::Close(const std::string& id,
                                               const absl::Status& reason) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown session '", id, "'"));
    }
    session = std::move(it->second.session);
    sessions_.erase(it);
  }
  const int64_t dropped = session->Close(reason);
  closed_total_.fetch_add(1, std::memory_order_relaxed);
  return dropped;
}

std::vector<std::string> SessionRegistry::CloseExpired(Clock::time_point now) {
  std::vector<std::shared_ptr<Session>> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.expires < now) {
        expired_order_.push_back(it->first);
        expired_.insert_or_assign(it->first, now);
        if (expired_order_.size() > kRememberedExpired) {
          expired_.erase(expired_order_.front());
          expired_order_.pop_front();
        }
        expired.push_back(std::move(it->second.session));
        sessions_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  std::vector<std::string> ids;
  for (const auto& session : expired) {
    session->Close(absl::NotFoundError(absl::StrCat(
        "session ", session->id().substr(0, 8), "... expired: no call or keep-alive for the lease")));
    ids.push_back(session->id());
  }
  closed_total_.fetch_add(static_cast<int64_t>(expired.size()), std::memory_order_relaxed);
  return ids;
}

int64_t SessionRegistry::CloseAll(const absl::Status& reason) {
  absl::flat_hash_map<std::string, Entry> all;
  {
    absl::MutexLock lock(&mu_);
    all.swap(sessions_);
  }
  for (auto& [id, entry] : all) entry.session->Close(reason);
  closed_total_.fetch_add(static_cast<int64_t>(all.size()), std::memory_order_relaxed);
  return static_cast<int64_t>(all.size());
}

SessionRegistry::Totals SessionRegistry::CountTensors() const {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : sessions_) sessions.push_back(entry.session);
  }
  Totals totals;
  totals.sessions = static_cast<double>(sessions.size());
  for (const auto& session : sessions) {
    totals.tensors += static_cast<double>(session->size());
    if (session->stream() != nullptr) totals.queued += static_cast<double>(session->stream()->pending());
  }
  return totals;
}

int64_t SessionRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(sessions_.size());
}

}  // namespace tensord
