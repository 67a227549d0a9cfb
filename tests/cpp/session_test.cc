// Tests of session/session.h: handles, Put/Get/Free/List, storage
// accounting, Close, the SessionRegistry's leases, and the CommandLog that
// lets an Execute stream be resumed.
#include "session/session.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/views.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::Iota;
using ::tensord_testing::IsOk;
using ::tensord_testing::IsOkAndHolds;
using ::tensord_testing::StatusIs;
using ::testing::ElementsAre;

bool IsLowerHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The session's handles, sorted.
std::vector<std::string> HandlesOf(const Session& session) {
  std::vector<std::string> handles;
  for (const auto& [handle, tensor] : session.List()) handles.push_back(handle);
  std::sort(handles.begin(), handles.end());
  return handles;
}

TEST(NewRandomIdTest, ThirtyTwoHexDigitsAndDistinct) {
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewRandomId();
    ASSERT_EQ(id.size(), 32u) << id;
    ASSERT_TRUE(IsLowerHex(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(SessionTest, PutThenGetReturnsTheSameTensor) {
  Session session("id", "client");
  EXPECT_EQ(session.id(), "id");
  EXPECT_EQ(session.client_name(), "client");
  const Tensor t = Iota({2, 3});
  ASSERT_OK_AND_ASSIGN(const std::string handle, session.Put(t));
  EXPECT_EQ(handle.size(), 32u);
  EXPECT_TRUE(IsLowerHex(handle));
  ASSERT_OK_AND_ASSIGN(Tensor got, session.Get(handle));
  EXPECT_EQ(got.storage(), t.storage());
  EXPECT_THAT(got.shape(), ElementsAre(2, 3));
  EXPECT_EQ(session.size(), 1);
}

TEST(SessionTest, HandlesAreDistinctEvenForTheSameTensor) {
  Session session("id", "client");
  const Tensor t = Iota({2});
  ASSERT_OK_AND_ASSIGN(const std::string a, session.Put(t));
  ASSERT_OK_AND_ASSIGN(const std::string b, session.Put(t));
  EXPECT_NE(a, b);
  EXPECT_THAT(HandlesOf(session), ElementsAre(std::min(a, b), std::max(a, b)));
}

TEST(SessionTest, GetOfAnUnknownHandleNamesIt) {
  Session session("id", "client");
  EXPECT_THAT(session.Get("deadbeef"),
              StatusIs(absl::StatusCode::kNotFound, "no tensor with handle 'deadbeef'"));
}

TEST(SessionTest, FreeIsAllOrNothing) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  Session session("id", "client");
  ASSERT_OK_AND_ASSIGN(const std::string a, session.Put(Iota({2}, DType::kInt64, budget)));
  ASSERT_OK_AND_ASSIGN(const std::string b, session.Put(Iota({3}, DType::kInt64, budget)));
  EXPECT_EQ(budget->in_use(), 128);  // two storages, each allocated as 64 bytes

  EXPECT_THAT(session.Free({a, "nope", b}),
              StatusIs(absl::StatusCode::kNotFound, "cannot free unknown handle 'nope'"));
  EXPECT_THAT(session.Get(a), IsOk());  // nothing was freed
  EXPECT_THAT(session.Get(b), IsOk());
  EXPECT_EQ(budget->in_use(), 128);

  EXPECT_THAT(session.Free({a, a}), IsOkAndHolds(1));  // listed twice, freed once
  EXPECT_THAT(session.Get(a), StatusIs(absl::StatusCode::kNotFound, a));
  EXPECT_EQ(budget->in_use(), 64);
  EXPECT_THAT(session.Free({a}), StatusIs(absl::StatusCode::kNotFound, a));
  EXPECT_THAT(session.Free({b}), IsOkAndHolds(1));
  EXPECT_EQ(budget->in_use(), 0);
  EXPECT_EQ(session.size(), 0);
  EXPECT_THAT(session.Free({}), IsOkAndHolds(0));
}

TEST(SessionTest, FreeingAHandleKeepsStorageOtherHandlesView) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  Session session("id", "client");
  ASSERT_OK_AND_ASSIGN(const std::string base, session.Put(Iota({2, 3}, DType::kInt64, budget)));
  ASSERT_OK_AND_ASSIGN(Tensor transposed, Transpose(*session.Get(base), 0, 1));
  ASSERT_OK_AND_ASSIGN(const std::string view, session.Put(transposed));
  transposed = Iota({1});  // only the session's handles reference the storage now
  ASSERT_THAT(session.Free({base}), IsOkAndHolds(1));
  EXPECT_EQ(budget->in_use(), 64);
  ASSERT_OK_AND_ASSIGN(Tensor t, session.Get(view));
  EXPECT_EQ(tensord_testing::At<int64_t>(t, {2, 1}), 5);
}

TEST(SessionTest, StorageBytesCountsASharedStorageOnce) {
  Session session("id", "client");
  EXPECT_EQ(session.StorageBytes(), 0);
  const Tensor t = Iota({2, 3}, DType::kFloat32);  // 24 bytes
  ASSERT_THAT(session.Put(t), IsOk());
  ASSERT_OK_AND_ASSIGN(Tensor flat, View(t, {6}));
  ASSERT_OK_AND_ASSIGN(Tensor row, Select(t, 0, 1));  // 12 bytes viewed, 24 held
  ASSERT_THAT(session.Put(flat), IsOk());
  ASSERT_THAT(session.Put(row), IsOk());
  EXPECT_EQ(session.StorageBytes(), 24);
  ASSERT_THAT(session.Put(Iota({2}, DType::kInt32)), IsOk());
  EXPECT_EQ(session.StorageBytes(), 32);
  EXPECT_EQ(session.size(), 4);
}

TEST(SessionTest, CloseFreesMemoryAndRefusesNewTensors) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  Session session("id", "client");
  ASSERT_THAT(session.Put(Iota({10}, DType::kInt64, budget)), IsOk());
  ASSERT_THAT(session.Put(Iota({5}, DType::kInt32, budget)), IsOk());
  EXPECT_EQ(budget->in_use(), 192);  // 80 and 20 bytes, allocated as 128 and 64
  EXPECT_EQ(session.Close(), 2);
  EXPECT_EQ(budget->in_use(), 0);
  EXPECT_EQ(session.size(), 0);
  EXPECT_THAT(HandlesOf(session), ElementsAre());
  EXPECT_THAT(session.Put(Iota({1}, DType::kInt64, budget)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "session id is closed"));
  EXPECT_EQ(budget->in_use(), 0);  // the refused tensor went with the call
  EXPECT_EQ(session.Close(), 0);
}

// ---- SessionRegistry -----------------------------------------------------------------------

TEST(SessionRegistryTest, OpenFindClose) {
  SessionRegistry registry(std::chrono::hours(1));
  EXPECT_EQ(registry.lease(), std::chrono::hours(1));
  std::shared_ptr<Session> a = registry.Open("alice");
  std::shared_ptr<Session> b = registry.Open("bob");
  EXPECT_EQ(a->id().size(), 32u);
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(a->client_name(), "alice");
  EXPECT_EQ(registry.size(), 2);

  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Session> found, registry.Find(a->id()));
  EXPECT_EQ(found, a);
  EXPECT_THAT(registry.Find("0123"),
              StatusIs(absl::StatusCode::kNotFound, "unknown session '0123'"));

  ASSERT_THAT(a->Put(Iota({1})), IsOk());
  ASSERT_THAT(a->Put(Iota({1})), IsOk());
  EXPECT_THAT(registry.Close(a->id()), IsOkAndHolds(2));
  EXPECT_THAT(registry.Find(a->id()), StatusIs(absl::StatusCode::kNotFound, a->id()));
  EXPECT_THAT(registry.Close(a->id()), StatusIs(absl::StatusCode::kNotFound, a->id()));
  EXPECT_THAT(a->Put(Iota({1})), StatusIs(absl::StatusCode::kFailedPrecondition, "closed"));
  EXPECT_EQ(registry.size(), 1);
}

TEST(SessionRegistryTest, CloseExpiredClosesSessionsPastTheirLease) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  SessionRegistry registry(std::chrono::milliseconds(1));
  std::shared_ptr<Session> session = registry.Open("client");
  ASSERT_THAT(session->Put(Iota({4}, DType::kInt64, budget)), IsOk());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_THAT(registry.CloseExpired(SessionRegistry::Clock::now()), ElementsAre(session->id()));
  EXPECT_EQ(registry.size(), 0);
  EXPECT_EQ(budget->in_use(), 0);
  EXPECT_THAT(registry.Find(session->id()), StatusIs(absl::StatusCode::kNotFound, session->id()));
  EXPECT_THAT(session->Put(Iota({1})), StatusIs(absl::StatusCode::kFailedPrecondition, "closed"));
}

TEST(SessionRegistryTest, CloseExpiredKeepsSessionsWithinTheirLease) {
  SessionRegistry registry(std::chrono::hours(1));
  std::shared_ptr<Session> session = registry.Open("client");
  EXPECT_THAT(registry.CloseExpired(SessionRegistry::Clock::now()), ElementsAre());
  EXPECT_THAT(registry.CloseExpired(SessionRegistry::Clock::now() + std::chrono::hours(2)),
              ElementsAre(session->id()));
}

TEST(SessionRegistryTest, FindRenewsTheLease) {
  const auto lease = std::chrono::hours(1);
  SessionRegistry registry(lease);
  std::shared_ptr<Session> renewed = registry.Open("renewed");
  std::shared_ptr<Session> idle = registry.Open("idle");
  // Both leases end at or before opened + lease.
  const SessionRegistry::Clock::time_point opened = SessionRegistry::Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_THAT(registry.Find(renewed->id()), IsOk());  // now ends after opened + lease + 5 ms
  EXPECT_THAT(registry.CloseExpired(opened + lease + std::chrono::milliseconds(1)),
              ElementsAre(idle->id()));
  EXPECT_THAT(registry.Find(renewed->id()), IsOk());
  EXPECT_THAT(registry.Find(idle->id()), StatusIs(absl::StatusCode::kNotFound, idle->id()));
}

TEST(SessionRegistryTest, FindSaysThatASessionExpired) {
  const auto lease = std::chrono::milliseconds(1);
  SessionRegistry registry(lease);
  std::shared_ptr<Session> session = registry.Open("client");
  ASSERT_THAT(registry.CloseExpired(SessionRegistry::Clock::now() + std::chrono::seconds(1)),
              ElementsAre(session->id()));
  EXPECT_THAT(registry.Find(session->id()),
              StatusIs(absl::StatusCode::kNotFound, "expired"));
  EXPECT_THAT(registry.Find("never-opened"),
              StatusIs(absl::StatusCode::kNotFound, "unknown session 'never-opened'"));
}

TEST(SessionRegistryTest, ClosedTotalCountsEveryWayASessionCloses) {
  SessionRegistry registry(std::chrono::hours(1));
  std::shared_ptr<Session> closed = registry.Open("closed");
  registry.Open("expires");
  registry.Open("expires too");
  EXPECT_EQ(registry.closed_total(), 0);
  ASSERT_THAT(registry.Close(closed->id()), IsOk());
  EXPECT_THAT(registry.Close(closed->id()), StatusIs(absl::StatusCode::kNotFound));  // counted once
  EXPECT_EQ(registry.closed_total(), 1);
  EXPECT_EQ(registry.CloseExpired(SessionRegistry::Clock::now() + std::chrono::hours(2)).size(), 2u);
  EXPECT_EQ(registry.closed_total(), 3);
  registry.Open("open at shutdown");
  EXPECT_EQ(registry.CloseAll(absl::UnavailableError("shutting down")), 1);
  EXPECT_EQ(registry.closed_total(), 4);
}

// ---- CommandLog ------------------------------------------------------------------------------

// Records what the log tells the attached stream.
class RecordingListener final : public CommandLog::Listener {
 public:
  void Updated() override { ++updates; }
  void Superseded() override { superseded = true; }
  int updates = 0;
  bool superseded = false;
};

std::vector<std::string> RepliesAfter(const CommandLog& log, uint64_t after) {
  std::vector<std::string> replies;
  log.RepliesAfter(after, &replies);
  return replies;
}

TEST(CommandLogTest, ACommandIsAdmittedOnceAcrossStreams) {
  CommandLog log;
  auto first = std::make_shared<RecordingListener>();
  const CommandLog::Attachment a = log.Attach(first);
  EXPECT_EQ(a.last_read, 0u);
  ASSERT_TRUE(log.BeginAdmit(a.generation));
  EXPECT_EQ(log.Admit(1), CommandLog::Admission::kNew);
  EXPECT_EQ(log.Admit(2), CommandLog::Admission::kNew);
  EXPECT_EQ(log.Admit(0), CommandLog::Admission::kNew);  // a release
  log.EndAdmit();
  EXPECT_EQ(log.progress().pending, 3u);

  // The link dropped: a new stream takes over and the client resends 1..3.
  auto second = std::make_shared<RecordingListener>();
  const CommandLog::Attachment b = log.Attach(second);
  EXPECT_TRUE(first->superseded);
  EXPECT_EQ(b.last_read, 2u);
  EXPECT_FALSE(log.BeginAdmit(a.generation));  // the old stream admits nothing more
  ASSERT_TRUE(log.BeginAdmit(b.generation));
  EXPECT_EQ(log.Admit(1), CommandLog::Admission::kDuplicate);
  EXPECT_EQ(log.Admit(2), CommandLog::Admission::kDuplicate);
  EXPECT_EQ(log.Admit(3), CommandLog::Admission::kNew);
  log.EndAdmit();
  EXPECT_EQ(log.progress().last_read, 3u);
  EXPECT_EQ(log.progress().pending, 4u);
}

TEST(CommandLogTest, RepliesAreKeptUntilAcknowledged) {
  CommandLog log;
  auto listener = std::make_shared<RecordingListener>();
  const CommandLog::Attachment a = log.Attach(listener);
  ASSERT_TRUE(log.BeginAdmit(a.generation));
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_EQ(log.Admit(id), CommandLog::Admission::kNew);
  log.EndAdmit();
  log.Completed(1, "one");
  log.Completed(2, std::nullopt);  // nothing to say (a sync)
  log.Completed(3, "three");
  EXPECT_EQ(listener->updates, 3);
  CommandLog::Progress progress = log.progress();
  EXPECT_EQ(progress.completed, 3u);
  EXPECT_EQ(progress.completions, 3u);
  EXPECT_EQ(progress.last_reply, 3u);
  EXPECT_EQ(progress.pending, 1u);
  EXPECT_THAT(RepliesAfter(log, 0), ElementsAre("one", "three"));
  EXPECT_THAT(RepliesAfter(log, 1), ElementsAre("three"));

  // An acknowledgement beyond what finished covers only what finished.
  log.Acknowledge(10);
  EXPECT_EQ(log.progress().acknowledged, 3u);
  EXPECT_THAT(RepliesAfter(log, 0), ElementsAre());
  log.Completed(4, "four");
  EXPECT_THAT(RepliesAfter(log, 0), ElementsAre("four"));

  // Ids the client acknowledged cannot come again.
  ASSERT_TRUE(log.BeginAdmit(a.generation));
  EXPECT_EQ(log.Admit(3), CommandLog::Admission::kAcknowledged);
  EXPECT_EQ(log.Admit(4), CommandLog::Admission::kDuplicate);
  log.EndAdmit();
}

TEST(CommandLogTest, KeepsAtMostItsBoundOfReplies) {
  CommandLog log;
  const CommandLog::Attachment a = log.Attach(std::make_shared<RecordingListener>());
  const uint64_t n = CommandLog::kMaxKeptReplies + 10;
  ASSERT_TRUE(log.BeginAdmit(a.generation));
  for (uint64_t id = 1; id <= n; ++id) ASSERT_EQ(log.Admit(id), CommandLog::Admission::kNew);
  log.EndAdmit();
  for (uint64_t id = 1; id <= n; ++id) log.Completed(id, absl::StrCat(id));
  const std::vector<std::string> kept = RepliesAfter(log, 0);
  ASSERT_EQ(kept.size(), CommandLog::kMaxKeptReplies);
  EXPECT_EQ(kept.front(), "11");
  EXPECT_EQ(kept.back(), absl::StrCat(n));
}

TEST(CommandLogTest, AttachWaitsForTheStreamThatIsAdmitting) {
  CommandLog log;
  const CommandLog::Attachment a = log.Attach(std::make_shared<RecordingListener>());
  ASSERT_TRUE(log.BeginAdmit(a.generation));
  ASSERT_EQ(log.Admit(1), CommandLog::Admission::kNew);
  std::atomic<bool> attached{false};
  uint64_t last_read = 0;
  std::thread other([&] {
    last_read = log.Attach(std::make_shared<RecordingListener>()).last_read;
    attached = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(attached);  // the old stream is still admitting its message
  ASSERT_EQ(log.Admit(2), CommandLog::Admission::kNew);
  log.EndAdmit();
  other.join();
  EXPECT_EQ(last_read, 2u);  // so the new stream skips both when they are resent
}

}  // namespace
}  // namespace tensord
