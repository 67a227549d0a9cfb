#include "exec/scheduler.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace tensord::exec {
namespace {

// The scheduler whose worker this thread is, and whether it is inside a
// ParallelFor range (where a nested ParallelFor runs inline).
// Workers run at a lower priority than the rest of the process (see
// WorkerLoop); 10 gives gRPC's threads about ten times their CPU share when
// both want one.
constexpr int kWorkerNice = 10;

thread_local Scheduler* current_scheduler = nullptr;
thread_local bool in_parallel_range = false;

}  // namespace

// One ParallelFor call: ranges are claimed in order under the scheduler's
// mutex; the caller waits for the helpers' ranges before returning.
struct Scheduler::ParallelJob {
  absl::FunctionRef<void(int64_t, int64_t)> fn;
  int64_t n;
  int64_t grain;
  int64_t next = 0;      // first unclaimed index
  int64_t helping = 0;   // ranges being run by helpers
  absl::CondVar helpers_done;
};

// ---- Stream -------------------------------------------------------------------

void Stream::Enqueue(Task task, uint64_t marker) {
  absl::Status refused;
  {
    absl::MutexLock lock(&scheduler_->mu_);
    if (closed_) {
      refused = close_reason_;
    } else {
      if (marker != 0) last_marker_ = std::max(last_marker_, marker);
      queue_.push_back(Entry{std::move(task), marker});
      if (!running_ && !in_ring_) {
        // The ring keeps the stream alive while it waits for a worker.
        scheduler_->MakeReady(shared_from_this());
      }
      return;
    }
  }
  task(refused);
}

size_t Stream::pending() const {
  absl::MutexLock lock(&scheduler_->mu_);
  return queue_.size() + (running_ ? 1 : 0);
}

size_t Stream::queued() const {
  absl::MutexLock lock(&scheduler_->mu_);
  return queue_.size();
}

uint64_t Stream::reached() const {
  absl::MutexLock lock(&scheduler_->mu_);
  return reached_;
}

void Stream::WhenReached(uint64_t marker, StatusCallback fn) {
  absl::Status status;
  {
    absl::MutexLock lock(&scheduler_->mu_);
    if (closed_) {
      status = close_reason_;
    } else if (reached_ < marker || running_) {
      // Called by the stream's owner after its current task (RunOne), or
      // by the owner of an inline callback (below) when that returns.
      waiters_.push_back(Waiter{marker, std::move(fn)});
      return;
    } else {
      // Idle and past the marker: run fn here, owning the stream meanwhile
      // so that a task enqueued now waits for it.
      running_ = true;
    }
  }
  fn(status);
  if (!status.ok()) return;
  absl::MutexLock lock(&scheduler_->mu_);
  // Waiters added while fn ran (fn may itself wait on this stream).
  for (std::vector<StatusCallback> reached = TakeReachedLocked(); !reached.empty();
       reached = TakeReachedLocked()) {
    scheduler_->mu_.Unlock();
    for (StatusCallback& callback : reached) callback(absl::OkStatus());
    scheduler_->mu_.Lock();
  }
  running_ = false;
  if (!queue_.empty() && !in_ring_) scheduler_->MakeReady(shared_from_this());
}

std::vector<StatusCallback> Stream::TakeReachedLocked() {
  std::vector<StatusCallback> reached;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->marker <= reached_) {
      reached.push_back(std::move(it->fn));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  return reached;
}

void Stream::AbandonMarkersAbove(uint64_t marker, const absl::Status& reason) {
  std::vector<StatusCallback> abandoned;
  {
    absl::MutexLock lock(&scheduler_->mu_);
    const uint64_t limit = std::max(marker, last_marker_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->marker > limit) {
        abandoned.push_back(std::move(it->fn));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (StatusCallback& fn : abandoned) fn(reason);
}

void Stream::Close(const absl::Status& reason) {
  std::deque<Entry> dropped;
  std::vector<Waiter> waiters;
  {
    absl::MutexLock lock(&scheduler_->mu_);
    if (closed_) return;
    closed_ = true;
    close_reason_ = reason.ok() ? absl::CancelledError("the stream was closed") : reason;
    dropped.swap(queue_);
    waiters.swap(waiters_);
  }
  // Outside the lock: tasks and callbacks may call back into the stream.
  for (Entry& entry : dropped) entry.task(close_reason_);
  for (Waiter& waiter : waiters) waiter.fn(close_reason_);
}

bool Stream::closed() const {
  absl::MutexLock lock(&scheduler_->mu_);
  return closed_;
}

// ---- Scheduler ------------------------------------------------------------------

Scheduler::Scheduler(int num_workers) {
  workers_.reserve(static_cast<size_t>(std::max(1, num_workers)));
  for (int i = 0; i < std::max(1, num_workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

Scheduler::~Scheduler() {
  std::deque<std::shared_ptr<Stream>> ring;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_.SignalAll();
  }
  for (std::thread& worker : workers_) worker.join();
  {
    absl::MutexLock lock(&mu_);
    ring.swap(ring_);
  }
  const absl::Status stopped = absl::UnavailableError("the server is shutting down");
  for (const std::shared_ptr<Stream>& stream : ring) stream->Close(stopped);
}

std::shared_ptr<Stream> Scheduler::NewStream() {
  return std::shared_ptr<Stream>(new Stream(this));
}

int Scheduler::AvailableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void Scheduler::MakeReady(const std::shared_ptr<Stream>& stream) {
  stream->in_ring_ = true;
  ring_.push_back(stream);
  work_.Signal();
}

void Scheduler::WorkerLoop() {
  current_scheduler = this;
  // Workers compute; gRPC's threads move requests and replies. Marking the
  // workers SCHED_BATCH (as CPU-bound, no wake-up preemption, no privilege
  // needed) lets an I/O thread that wakes up take a CPU from a worker busy
  // with a long GEMM at once, so a small op of another session is not
  // delayed by the scheduler's time slice. Failure only loses that hint.
  sched_param param{};
  (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
  absl::MutexLock lock(&mu_);
  while (true) {
    if (stopping_) return;
    if (!ring_.empty()) {  // streams first: that is what bounds other sessions' waits
      std::shared_ptr<Stream> stream = std::move(ring_.front());
      ring_.pop_front();
      stream->in_ring_ = false;
      RunOne(stream);
      continue;
    }
    if (HelpOne()) continue;
    work_.Wait(&mu_);
  }
}

void Scheduler::RunOne(const std::shared_ptr<Stream>& stream) {
  // Runs the stream's tasks until it is empty or another stream is waiting:
  // with nobody else to take turns with, a busy stream keeps its worker
  // rather than going through the ring (and waking a second worker) for
  // every task.
  // running_ stays set while this worker owns the stream, callbacks
  // included, so that an Enqueue meanwhile does not hand it to another.
  stream->running_ = true;
  while (!stream->queue_.empty()) {
    Stream::Entry entry = std::move(stream->queue_.front());
    stream->queue_.pop_front();
    mu_.Unlock();
    entry.task(absl::OkStatus());
    entry.task = nullptr;  // release what the task captured before taking the lock
    mu_.Lock();
    if (entry.marker != 0) stream->reached_ = std::max(stream->reached_, entry.marker);
    // Waiters run before the next task: those whose marker this task
    // reached, and those that came while it ran (WhenReached defers to the
    // owner of a running stream).
    if (!stream->waiters_.empty()) {
      for (std::vector<StatusCallback> reached = stream->TakeReachedLocked(); !reached.empty();
           reached = stream->TakeReachedLocked()) {
        mu_.Unlock();
        for (StatusCallback& fn : reached) fn(absl::OkStatus());
        mu_.Lock();
      }
    }
    if (stopping_ || !ring_.empty()) break;  // others are waiting: take turns
  }
  stream->running_ = false;
  // Back of the ring, behind the streams that waited.
  if (!stream->queue_.empty() && !stream->in_ring_) MakeReady(stream);
}

bool Scheduler::HelpOne() {
  for (ParallelJob* job : jobs_) {
    if (job->next >= job->n) continue;
    const int64_t begin = job->next;
    const int64_t end = std::min(job->n, begin + job->grain);
    job->next = end;
    ++job->helping;
    mu_.Unlock();
    in_parallel_range = true;
    job->fn(begin, end);
    in_parallel_range = false;
    mu_.Lock();
    if (--job->helping == 0) job->helpers_done.SignalAll();
    return true;
  }
  return false;
}

void Scheduler::RunParallel(int64_t n, int64_t grain,
                            absl::FunctionRef<void(int64_t, int64_t)> fn) {
  ParallelJob job{fn, n, grain};
  mu_.Lock();
  jobs_.push_back(&job);
  // Wake as many idle workers as there are ranges beyond the caller's first.
  const int64_t ranges = (n + grain - 1) / grain;
  for (int64_t i = 1; i < ranges && i < num_workers(); ++i) work_.Signal();
  while (job.next < job.n) {
    const int64_t begin = job.next;
    const int64_t end = std::min(job.n, begin + job.grain);
    job.next = end;
    mu_.Unlock();
    in_parallel_range = true;
    fn(begin, end);
    in_parallel_range = false;
    mu_.Lock();
  }
  jobs_.erase(std::find(jobs_.begin(), jobs_.end(), &job));
  while (job.helping > 0) job.helpers_done.Wait(&mu_);
  mu_.Unlock();
}

void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (current_scheduler == nullptr || in_parallel_range || n <= grain ||
      current_scheduler->num_workers() == 1) {
    for (int64_t begin = 0; begin < n; begin += grain) fn(begin, std::min(n, begin + grain));
    return;
  }
  current_scheduler->RunParallel(n, grain, fn);
}

}  // namespace tensord::exec
