// The execution engine: ordered streams of work, run by one pool of workers.
//
// A Stream is an ordered queue of tasks. Its tasks run one at a time, each
// after every task enqueued before it: the contract of a CUDA stream. A
// session owns one Stream and its client's commands are its tasks, so a
// session's work runs in the order the client issued it, whichever worker
// picks it up. This is the unit that maps onto a device: on a GPU a
// Stream will own a CUDA stream, the worker running one of its tasks will
// make that CUDA stream current, and a task's kernels are launched on it
// (so a GPU task returns once its kernels are queued). A training job
// (jobs/) is a program whose steps are enqueued on its session's Stream
// like any other command, so it is scheduled, and bounded, like eager work.
//
// The Scheduler owns the workers (by default one per CPU this process may
// use) and decides which stream runs next. Streams that have work wait in
// one ring; a worker takes the stream at its head, runs one task, and puts
// the stream back at the tail. Sessions therefore take turns task by task
// (round-robin), however long any one queue is, and a stream never runs on
// two workers at once. A long task holds its worker; kernels that can split
// their work (GEMM) call ParallelFor, whose chunks are also run by idle
// workers, and a worker always prefers a waiting stream's task to a chunk.
// So another session's small op waits at most for one chunk of a long op
// (a bounded slice, about a millisecond), not for the whole op.
//
// Backpressure is the producers' part: the queue itself never refuses, and
// the RPC layer stops reading a client's commands while too many of them
// are queued or unanswered (rpc/execute.cc), so a flooding client is slowed
// by gRPC flow control and the queue stays bounded.
//
// Markers: a task may carry a marker (the client's command id). Markers of
// one stream increase in enqueue order, and reached() is the marker of the
// last task that ran; WhenReached lets another call (a download ordered
// after command N) wait for a point in the stream without being a task.
// Its callback runs *at* that point: after the task that reached the
// marker and before any later task of the stream starts, like a task of
// its own (this is what lets a download take a consistent snapshot of a
// tensor that later commands write; see core/storage.h).
//
// Place in the layering: exec/ is a runtime below session/ (a session owns
// its Stream) and beside ops/ (kernels call ParallelFor); it knows nothing
// of sessions, commands or gRPC, which is what lets a GPU backend and the
// training jobs reuse it as it is.
//
// Thread-safety: all methods are thread-safe. Every stream's state is
// guarded by its scheduler's one mutex; tasks and callbacks run without it
// held, so they may enqueue, close or query streams. A Task is called
// exactly once: with OK to run it, or with the reason it never will
// (its stream was closed, or the scheduler stopped, before its turn).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tensord::exec {

using Task = absl::AnyInvocable<void(const absl::Status&)>;
using StatusCallback = absl::AnyInvocable<void(const absl::Status&)>;

class Scheduler;

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Queues `task` after every task enqueued before it. `marker` (0: none)
  // must not be below a marker enqueued earlier. On a closed stream the task
  // is called at once with the reason the stream was closed.
  void Enqueue(Task task, uint64_t marker = 0);

  // Tasks queued or running.
  size_t pending() const;
  // Tasks queued, not counting one running now.
  size_t queued() const;

  // The marker of the last marked task that ran (0 before any).
  uint64_t reached() const;
  // Calls fn(OK) once reached() >= marker, between two tasks: no task of
  // this stream runs while fn does. fn(reason) if the stream is closed
  // first. fn runs on the calling thread when the stream is idle and past
  // the marker, else on the worker that runs the stream; it should be short.
  void WhenReached(uint64_t marker, StatusCallback fn);
  // Calls fn(reason) for every WhenReached waiter of a marker above
  // `marker` and not enqueued yet: its producer will send no more (an
  // Execute stream ended).
  void AbandonMarkersAbove(uint64_t marker, const absl::Status& reason);

  // Refuses new tasks and drops queued ones (each is called with `reason`,
  // as are the WhenReached waiters). A task already running finishes.
  // Idempotent: later calls change nothing.
  void Close(const absl::Status& reason);
  bool closed() const;

 private:
  friend class Scheduler;
  explicit Stream(Scheduler* scheduler) : scheduler_(scheduler) {}
  // Takes the waiters whose marker is reached, to be called by the thread
  // that owns the stream (running_), outside the lock.
  std::vector<StatusCallback> TakeReachedLocked();

  struct Entry {
    Task task;
    uint64_t marker;
  };
  struct Waiter {
    uint64_t marker;
    StatusCallback fn;
  };

  Scheduler* const scheduler_;
  // All guarded by scheduler_->mu_ (declared there; annotated informally).
  std::deque<Entry> queue_;
  bool running_ = false;   // a worker is running this stream's head task
  bool in_ring_ = false;   // listed in the scheduler's ready ring
  bool closed_ = false;
  absl::Status close_reason_;
  uint64_t last_marker_ = 0;  // largest marker enqueued
  uint64_t reached_ = 0;
  std::vector<Waiter> waiters_;
};

class Scheduler {
 public:
  // Starts `num_workers` (>= 1) worker threads.
  explicit Scheduler(int num_workers);
  // Stops the workers after the tasks they are running; every task still
  // queued is called with UNAVAILABLE. REQUIRES: no thread enqueues anymore.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  std::shared_ptr<Stream> NewStream();
  int num_workers() const { return static_cast<int>(workers_.size()); }

  // The CPUs this process may run on (its affinity mask), at least 1.
  static int AvailableCpus();

 private:
  friend class Stream;
  friend void ParallelFor(int64_t, int64_t, absl::FunctionRef<void(int64_t, int64_t)>);
  struct ParallelJob;

  void WorkerLoop();
  // Runs `stream`'s tasks (see the .cc); called by a worker with mu_ held,
  // returns with it held.
  void RunOne(const std::shared_ptr<Stream>& stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Claims and runs one chunk of a parallel job with unclaimed work, if any.
  bool HelpOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MakeReady(const std::shared_ptr<Stream>& stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunParallel(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

  absl::Mutex mu_;
  absl::CondVar work_;  // a stream became ready, a job was posted, or stopping
  std::deque<std::shared_ptr<Stream>> ring_ ABSL_GUARDED_BY(mu_);
  std::vector<ParallelJob*> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

// Runs fn(begin, end) over consecutive ranges that cover [0, n), each at
// most `grain` long, and returns when all have run. The calling thread runs
// ranges itself; when it is a worker of a Scheduler, that scheduler's idle
// workers run some too (never a worker that has a stream's task to run).
// From any other thread, or from inside a range, every range runs on the
// calling thread in order. `fn` must not throw.
void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

}  // namespace tensord::exec
