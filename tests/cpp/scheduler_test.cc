// Tests of exec/scheduler.h: order within a stream, round-robin between
// streams, markers and WhenReached, Close, ParallelFor, and a stress test
// of GEMMs of different kinds running at once on the workers (the reason
// the process-wide BLAS lock could go).
#include "exec/scheduler.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/create.h"
#include "ops/op.h"
#include "testing.h"

namespace tensord::exec {
namespace {

using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;

// Waits until `done` holds (polling; the tasks under test run elsewhere).
template <typename F>
bool Eventually(F done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(SchedulerTest, TasksOfOneStreamRunOneAtATimeInOrder) {
  Scheduler scheduler(4);
  std::shared_ptr<Stream> stream = scheduler.NewStream();
  absl::Mutex mu;
  std::vector<int> order;
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  constexpr int kTasks = 2000;
  for (int i = 0; i < kTasks; ++i) {
    stream->Enqueue([&, i](const absl::Status& status) {
      ASSERT_TRUE(status.ok());
      const int now = ++running;
      int seen = max_running.load();
      while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
      }
      {
        absl::MutexLock lock(&mu);
        order.push_back(i);
      }
      --running;
    });
  }
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return order.size() == kTasks;
  }));
  std::vector<int> expected(kTasks);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(order, expected);
  EXPECT_EQ(max_running.load(), 1);
  EXPECT_TRUE(Eventually([&] { return stream->pending() == 0; }));
}

TEST(SchedulerTest, StreamsTakeTurnsTaskByTask) {
  // One worker, two streams with long queues: the worker alternates.
  Scheduler scheduler(1);
  std::shared_ptr<Stream> a = scheduler.NewStream();
  std::shared_ptr<Stream> b = scheduler.NewStream();
  absl::Notification go;
  absl::Mutex mu;
  std::string order;
  // Hold the only worker until both queues are full.
  a->Enqueue([&](const absl::Status&) { go.WaitForNotification(); });
  for (int i = 0; i < 5; ++i) {
    a->Enqueue([&](const absl::Status&) {
      absl::MutexLock lock(&mu);
      order += 'a';
    });
    b->Enqueue([&](const absl::Status&) {
      absl::MutexLock lock(&mu);
      order += 'b';
    });
  }
  go.Notify();
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return order.size() == 10;
  }));
  // a had the worker; b waited in the ring meanwhile, so b goes first and
  // a, put back behind it, second: then they alternate.
  EXPECT_EQ(order, "bababababa");
}

TEST(SchedulerTest, AShortTaskIsNotHeldBackByAnotherStreamsLongQueue) {
  // Declared before the scheduler: a busy task may still be running while
  // the scheduler's destructor waits for it.
  std::atomic<bool> stop{false};
  std::atomic<int> busy_done{0};
  Scheduler scheduler(2);
  std::shared_ptr<Stream> busy = scheduler.NewStream();
  std::shared_ptr<Stream> quick = scheduler.NewStream();
  for (int i = 0; i < 200; ++i) {
    busy->Enqueue([&](const absl::Status&) {
      if (stop) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ++busy_done;
    });
  }
  absl::Notification ran;
  quick->Enqueue([&](const absl::Status&) { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // Not a timing assertion on the machine's speed: the busy stream's queue
  // is a full second of work, and the quick task must not wait for it.
  EXPECT_LT(busy_done.load(), 200) << "the quick task waited for the whole queue";
  stop = true;
}

TEST(SchedulerTest, MarkersAreReachedInOrderAndWaitersRun) {
  Scheduler scheduler(2);
  std::shared_ptr<Stream> stream = scheduler.NewStream();
  absl::Notification hold;
  stream->Enqueue([&](const absl::Status&) { hold.WaitForNotification(); }, 1);
  stream->Enqueue([](const absl::Status&) {}, 2);
  stream->Enqueue([](const absl::Status&) {});  // no marker
  stream->Enqueue([](const absl::Status&) {}, 5);
  std::atomic<int> fired{0};
  absl::Status seen = absl::UnknownError("not called");
  stream->WhenReached(5, [&](const absl::Status& status) {
    seen = status;
    ++fired;
  });
  EXPECT_EQ(fired.load(), 0);
  EXPECT_EQ(stream->reached(), 0u);
  hold.Notify();
  ASSERT_TRUE(Eventually([&] { return fired.load() == 1; }));
  EXPECT_TRUE(seen.ok());
  EXPECT_EQ(stream->reached(), 5u);
  // Already reached and idle: called at once, on this thread.
  ASSERT_TRUE(Eventually([&] { return stream->pending() == 0; }));
  bool at_once = false;
  stream->WhenReached(3, [&](const absl::Status& status) { at_once = status.ok(); });
  EXPECT_TRUE(at_once);
}

// The point a waiter asks for is a place in the stream's order: the waiter
// runs after the task running when it came and before any later task, even
// when its marker was reached long ago (a download's snapshot relies on it).
TEST(SchedulerTest, AReachedWaiterRunsBetweenTasksNeverDuringOne) {
  Scheduler scheduler(2);
  std::shared_ptr<Stream> stream = scheduler.NewStream();
  absl::Mutex mu;
  std::vector<std::string> order;
  auto note = [&](std::string what) {
    absl::MutexLock lock(&mu);
    order.push_back(std::move(what));
  };
  absl::Notification started, hold;
  stream->Enqueue([&](const absl::Status&) {
    started.Notify();
    hold.WaitForNotification();
    note("task 1");
  }, 1);
  started.WaitForNotification();
  std::atomic<bool> fired{false};
  stream->WhenReached(0, [&](const absl::Status& status) {
    EXPECT_TRUE(status.ok());
    note("waiter");
    // A task enqueued by the waiter itself waits for it too.
    stream->Enqueue([&](const absl::Status&) { note("task 3"); }, 3);
    fired = true;
  });
  stream->Enqueue([&](const absl::Status&) { note("task 2"); }, 2);
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(fired.load()) << "the waiter ran while task 1 was running";
  hold.Notify();
  ASSERT_TRUE(Eventually([&] { return stream->reached() == 3; }));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<std::string>{"task 1", "waiter", "task 2", "task 3"}));
}

TEST(SchedulerTest, AnInlineWaiterHoldsTheStreamUntilItReturns) {
  Scheduler scheduler(2);
  std::shared_ptr<Stream> stream = scheduler.NewStream();
  std::atomic<bool> task_ran{false};
  bool task_ran_during_waiter = true;
  stream->WhenReached(0, [&](const absl::Status&) {
    stream->Enqueue([&](const absl::Status&) { task_ran = true; }, 1);
    absl::SleepFor(absl::Milliseconds(20));
    task_ran_during_waiter = task_ran.load();
  });
  EXPECT_FALSE(task_ran_during_waiter);
  ASSERT_TRUE(Eventually([&] { return task_ran.load(); }));
}

TEST(SchedulerTest, CloseDropsQueuedTasksWithTheReasonAndRefusesNewOnes) {
  Scheduler scheduler(1);
  std::shared_ptr<Stream> stream = scheduler.NewStream();
  absl::Notification started;
  absl::Notification hold;
  std::atomic<bool> first_ran{false};
  stream->Enqueue([&](const absl::Status& status) {
    started.Notify();
    hold.WaitForNotification();
    first_ran = status.ok();
  });
  started.WaitForNotification();
  std::vector<absl::Status> dropped;
  for (int i = 0; i < 3; ++i) {
    stream->Enqueue([&](const absl::Status& status) { dropped.push_back(status); }, 10 + i);
  }
  absl::Status waiter;
  stream->WhenReached(12, [&](const absl::Status& status) { waiter = status; });
  EXPECT_EQ(stream->pending(), 4u);
  stream->Close(absl::CancelledError("client gone"));
  ASSERT_EQ(dropped.size(), 3u);
  for (const absl::Status& status : dropped) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled, "client gone"));
  }
  EXPECT_THAT(waiter, StatusIs(absl::StatusCode::kCancelled, "client gone"));
  absl::Status late;
  stream->Enqueue([&](const absl::Status& status) { late = status; });
  EXPECT_THAT(late, StatusIs(absl::StatusCode::kCancelled, "client gone"));
  hold.Notify();  // the running task still finishes
  ASSERT_TRUE(Eventually([&] { return first_ran.load(); }));
  EXPECT_TRUE(stream->closed());
}

TEST(SchedulerTest, DestroyingTheSchedulerAnswersQueuedTasks) {
  absl::Status answer = absl::UnknownError("not called");
  {
    Scheduler scheduler(1);
    std::shared_ptr<Stream> stream = scheduler.NewStream();
    absl::Notification started;
    stream->Enqueue([&](const absl::Status&) {
      started.Notify();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    });
    started.WaitForNotification();
    stream->Enqueue([&](const absl::Status& status) { answer = status; });
  }
  EXPECT_THAT(answer, StatusIs(absl::StatusCode::kUnavailable, "shutting down"));
}

TEST(ParallelForTest, CoversTheRangeOnceFromAWorkerAndFromOtherThreads) {
  Scheduler scheduler(3);
  for (const bool on_worker : {true, false}) {
    std::vector<std::atomic<int>> hits(1000);
    auto body = [&] {
      ParallelFor(1000, 7, [&](int64_t begin, int64_t end) {
        EXPECT_LE(end - begin, 7);
        for (int64_t i = begin; i < end; ++i) ++hits[i];
      });
    };
    if (on_worker) {
      absl::Notification done;
      scheduler.NewStream()->Enqueue([&](const absl::Status&) {
        body();
        done.Notify();
      });
      done.WaitForNotification();
    } else {
      body();
    }
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(hits[i].load(), 1) << i << " on_worker=" << on_worker;
  }
}

TEST(ParallelForTest, UsesIdleWorkersAndNestsInline) {
  Scheduler scheduler(4);
  absl::Mutex mu;
  std::map<std::thread::id, int> threads;
  std::atomic<int> inner{0};
  absl::Notification done;
  scheduler.NewStream()->Enqueue([&](const absl::Status&) {
    ParallelFor(64, 1, [&](int64_t, int64_t) {
      {
        absl::MutexLock lock(&mu);
        ++threads[std::this_thread::get_id()];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ParallelFor(10, 1, [&](int64_t b, int64_t e) { inner += static_cast<int>(e - b); });
    });
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(inner.load(), 640);
  absl::MutexLock lock(&mu);
  EXPECT_GT(threads.size(), 1u) << "no idle worker helped";
}

// Two sessions' GEMMs of different kinds (sgemm NN, sgemm TN, dgemm) at once,
// over and over: with OpenBLAS on the calling thread they share no state, so
// every result must equal the one computed alone.
TEST(ConcurrentGemmTest, DifferentKernelsAtOnceGiveTheSameResults) {
  std::shared_ptr<MemoryBudget> budget = LargeBudget();
  uint64_t seed = 1;
  auto matrix = [&](DType dtype, Dims shape, double scale) {
    TensorOptions options;
    options.dtype = dtype;
    options.budget = budget;
    Tensor t = tensord_testing::ValueOrThrow(Rand(std::move(shape), seed++, options));
    return *CallOp("mul", {t, Scalar{scale}}, budget);
  };
  struct Case {
    DType dtype;
    bool transpose_a;
  };
  const std::vector<Case> cases = {{DType::kFloat32, false}, {DType::kFloat32, true},
                                   {DType::kFloat64, false}, {DType::kFloat64, true}};
  std::vector<Tensor> as, bs, expected;
  for (const Case& c : cases) {
    Tensor a = matrix(c.dtype, {192, 160}, 1.0);
    if (c.transpose_a) a = *CallOp("transpose", {matrix(c.dtype, {160, 192}, 1.0)}, budget,
                                   {{"dim0", int64_t{0}}, {"dim1", int64_t{1}}});
    Tensor b = matrix(c.dtype, {160, 176}, 0.5);
    as.push_back(a);
    bs.push_back(b);
    expected.push_back(*CallOp("matmul", {a, b}, budget));
  }
  Scheduler scheduler(4);
  std::vector<std::shared_ptr<Stream>> streams;
  for (size_t i = 0; i < cases.size(); ++i) streams.push_back(scheduler.NewStream());
  std::atomic<int> mismatches{0};
  std::atomic<int> done{0};
  constexpr int kRounds = 40;
  for (int round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) {
      streams[i]->Enqueue([&, i](const absl::Status&) {
        Tensor got = *CallOp("matmul", {as[i], bs[i]}, budget);
        Tensor same = *CallOp("eq", {got, expected[i]}, budget);
        Tensor all = *CallOp("prod", {same}, budget);  // int64 1 iff every element matched
        if (tensord_testing::Elements<int64_t>(all).at(0) != 1) ++mismatches;
        ++done;
      });
    }
  }
  ASSERT_TRUE(Eventually([&] { return done.load() == kRounds * static_cast<int>(cases.size()); }));
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace tensord::exec
