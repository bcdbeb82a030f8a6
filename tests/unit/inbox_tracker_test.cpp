// The partition tracker's state machine and the retry delays, without a broker.
#include <gtest/gtest.h>

#include <algorithm>

#include "partition_tracker.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::inbox::partition_table;
using txbox::inbox::phase;
using txbox::inbox::steady;
using txbox::inbox::TopicPartition;
using txbox::inbox::tracker_actions;

const TopicPartition p0{"t", 0};
const TopicPartition p1{"t", 1};

bool has(const std::vector<TopicPartition>& v, const TopicPartition& tp) {
  return std::find(v.begin(), v.end(), tp) != v.end();
}

phase phase_of(const partition_table& t, const TopicPartition& tp) {
  return t.partitions().at(tp).phase;
}

TEST(InboxTracker, AssignedWithStoredOffsetsStartsThereAndResumes) {
  partition_table t(true);
  const auto a = t.assigned({p0, p1}, std::map<TopicPartition, std::int64_t>{{p0, 42}});
  EXPECT_EQ(a.assign_at.at(p0), 42);
  EXPECT_EQ(a.assign_at.at(p1), txbox::inbox::offset_beginning);
  EXPECT_TRUE(has(a.resume, p0) && has(a.resume, p1)) << "a stale pause flag must be cleared";
  EXPECT_TRUE(a.pause.empty());
  EXPECT_EQ(phase_of(t, p0), phase::ready);
  EXPECT_TRUE(t.accepts(p0, 42));
  EXPECT_FALSE(t.accepts(p0, 41)) << "stale record before the stored offset";
  EXPECT_TRUE(t.accepts(p1, 0));
  EXPECT_FALSE(t.accepts({"t", 9}, 0)) << "not assigned";
}

TEST(InboxTracker, LatestWhenNotFromEarliest) {
  partition_table t(false);
  const auto a = t.assigned({p0}, std::map<TopicPartition, std::int64_t>{});
  EXPECT_EQ(a.assign_at.at(p0), txbox::inbox::offset_end);
}

TEST(InboxTracker, OffsetsUnknownAtAssignmentPauseUntilLoaded) {
  partition_table t(true);
  const auto a = t.assigned({p0, p1}, std::nullopt);
  EXPECT_EQ(a.assign_at.at(p0), txbox::inbox::offset_invalid);
  EXPECT_TRUE(has(a.pause, p0) && has(a.pause, p1));
  EXPECT_FALSE(t.accepts(p0, 0));
  EXPECT_EQ(t.unknown().size(), 2u);
  const auto now = steady::now();
  const auto l = t.offsets_loaded({{p0, 7}}, now);
  ASSERT_EQ(l.seek.size(), 2u);
  EXPECT_EQ(l.seek[0], std::make_pair(p0, std::int64_t{7}));
  EXPECT_EQ(l.seek[1], std::make_pair(p1, txbox::inbox::offset_beginning));
  EXPECT_TRUE(has(l.resume, p0) && has(l.resume, p1));
  EXPECT_TRUE(t.unknown().empty());
  EXPECT_TRUE(t.accepts(p0, 7));
  EXPECT_FALSE(t.accepts(p0, 6));
}

TEST(InboxTracker, HandlerFailureWaitsThenResumesAtTheFailedOffset) {
  partition_table t(true);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{{p0, 0}});
  t.failed(p0, 4, 1);
  const auto now = steady::now();
  auto r = t.retry_later(p0, 4, now + 100ms, false, "boom");
  EXPECT_TRUE(has(r.pause, p0));
  ASSERT_EQ(r.seek.size(), 1u);
  EXPECT_EQ(r.seek[0].second, 4);
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_EQ(phase_of(t, p0), phase::waiting);
  EXPECT_FALSE(t.accepts(p0, 4)) << "waiting: nothing collected";
  EXPECT_TRUE(t.due(now + 50ms).resume.empty());
  EXPECT_TRUE(has(t.due(now + 100ms).resume, p0));
  EXPECT_TRUE(t.accepts(p0, 4));
  ASSERT_TRUE(t.prior(p0));
  EXPECT_EQ(t.prior(p0)->offset, 4);
  EXPECT_EQ(t.prior(p0)->attempts, 1);
  t.committed({{p0, 5}});
  EXPECT_FALSE(t.prior(p0)) << "the failure is over once the message committed";
}

TEST(InboxTracker, BlockedIsLoggedOnceAndUnblockedOnce) {
  partition_table t(true);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{{p0, 0}});
  const auto now = steady::now();
  t.failed(p0, 2, 3);
  EXPECT_EQ(t.retry_later(p0, 2, now, true, "down").warnings.size(), 1u);
  t.due(now);
  t.failed(p0, 2, 4);
  EXPECT_TRUE(t.retry_later(p0, 2, now, true, "down").warnings.empty());
  t.due(now);
  EXPECT_EQ(t.committed({{p0, 3}}).notes.size(), 1u);
  EXPECT_TRUE(t.committed({{p0, 4}}).notes.empty());
}

TEST(InboxTracker, OffsetsLostPausesEveryPartitionAndKeepsTheRetryBackoff) {
  partition_table t(true);
  t.assigned({p0, p1}, std::map<TopicPartition, std::int64_t>{{p0, 0}, {p1, 0}});
  const auto now = steady::now();
  t.failed(p1, 3, 1);
  t.retry_later(p1, 3, now + 10s, false, "x");
  const auto lost = t.offsets_lost();
  EXPECT_TRUE(has(lost.pause, p0) && has(lost.pause, p1));
  EXPECT_FALSE(t.accepts(p0, 0));
  const auto l = t.offsets_loaded({{p0, 5}, {p1, 3}}, now);
  EXPECT_TRUE(has(l.resume, p0));
  EXPECT_FALSE(has(l.resume, p1)) << "its handler-retry backoff still runs";
  EXPECT_EQ(phase_of(t, p1), phase::waiting);
  EXPECT_EQ(t.prior(p1)->attempts, 1) << "a rollback is not a handler attempt";
  EXPECT_TRUE(has(t.due(now + 10s).resume, p1));
}

TEST(InboxTracker, LoadedOffsetPastTheFailureClearsIt) {
  partition_table t(true);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{{p0, 0}});
  t.failed(p0, 3, 2);
  t.offsets_lost({p0});
  t.offsets_loaded({{p0, 10}}, steady::now());
  EXPECT_FALSE(t.prior(p0));
}

TEST(InboxTracker, RevokedIsForgottenAndResumed) {
  partition_table t(true);
  t.assigned({p0, p1}, std::nullopt);
  const auto r = t.revoked({p0});
  EXPECT_TRUE(has(r.resume, p0)) << "no pause flag may outlive the assignment";
  EXPECT_EQ(t.partitions().count(p0), 0u);
  EXPECT_EQ(t.unknown(), std::vector<TopicPartition>{p1});
  // Assigned back: a fresh state, not the old failure.
  t.failed(p1, 1, 3);
  t.revoked({p1});
  t.assigned({p1}, std::map<TopicPartition, std::int64_t>{{p1, 1}});
  EXPECT_FALSE(t.prior(p1));
}

TEST(InboxTracker, CommittedNeverMovesBackwards) {
  partition_table t(true);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{{p0, 10}});
  t.committed({{p0, 5}});
  EXPECT_EQ(t.partitions().at(p0).next_offset, 10);
}

// Issue 25, defect 1: under start_from latest, a partition with no stored offset whose first
// message failed, followed by any database failure, sought to the end again: the failed
// message and everything after it up to the new end were never handled nor dead-lettered.
TEST(InboxTracker, LatestKeepsTheFailedFirstOffsetWhenTheOffsetsAreLost) {
  partition_table t(false);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{});
  const auto now = steady::now();
  t.failed(p0, 4, 1);
  t.retry_later(p0, 4, now, false, "x");
  t.offsets_lost();
  const auto l = t.offsets_loaded({}, now);
  ASSERT_EQ(l.seek.size(), 1u);
  EXPECT_EQ(l.seek[0].second, 4) << "sought to the end: offsets 4.. are skipped";
  EXPECT_TRUE(t.accepts(p0, 4));
  EXPECT_FALSE(t.accepts(p0, 3));
}

// The end read at assignment is where a latest partition starts, stored at once, and kept in
// memory while the store or the first batch fails.
TEST(InboxTracker, LatestStartsAtTheEndReadAtAssignmentAndPinsIt) {
  using offsets = std::map<TopicPartition, std::int64_t>;
  partition_table t(false);
  const auto a = t.assigned({p0, p1}, offsets{{p1, 7}}, offsets{{p0, 100}, {p1, 200}});
  EXPECT_EQ(a.assign_at.at(p0), 100);
  EXPECT_EQ(a.assign_at.at(p1), 7) << "a stored offset wins";
  EXPECT_EQ(a.store, (offsets{{p0, 100}})) << "pinned at assignment";
  t.offsets_lost();  // the store or the first batch (100..110) rolled back
  const auto now = steady::now();
  const auto l = t.offsets_loaded(offsets{{p1, 7}}, now);
  ASSERT_EQ(l.seek.size(), 2u);
  EXPECT_EQ(l.seek[0], std::make_pair(p0, std::int64_t{100})) << "not the end again";
  EXPECT_EQ(l.store, (offsets{{p0, 100}})) << "stored as soon as it can be";
  EXPECT_TRUE(t.accepts(p0, 100));
}

TEST(InboxTracker, LatestWithOffsetsUnknownAtAssignmentStartsAtTheEndReadThen) {
  using offsets = std::map<TopicPartition, std::int64_t>;
  partition_table t(false);
  const auto a = t.assigned({p0}, std::nullopt, offsets{{p0, 50}});
  EXPECT_TRUE(has(a.pause, p0));
  EXPECT_TRUE(a.store.empty()) << "nothing known is stored yet";
  const auto l = t.offsets_loaded({}, steady::now());
  ASSERT_EQ(l.seek.size(), 1u);
  EXPECT_EQ(l.seek[0].second, 50) << "messages that arrived while paused are kept";
  EXPECT_EQ(l.store, (offsets{{p0, 50}}));
}

TEST(InboxTracker, EarliestIgnoresTheEndsAndStoresNothing) {
  using offsets = std::map<TopicPartition, std::int64_t>;
  partition_table t(true);
  const auto a = t.assigned({p0}, offsets{}, offsets{{p0, 50}});
  EXPECT_EQ(a.assign_at.at(p0), txbox::inbox::offset_beginning);
  EXPECT_TRUE(a.store.empty());
}

// Issue 25, minor: a handler failure, then a database failure in the same batch: the batch
// rolls back, and the failed message waits for its backoff all the same.
TEST(InboxTracker, FailedBackoffSurvivesABatchRolledBackByTheDatabase) {
  partition_table t(true);
  t.assigned({p0}, std::map<TopicPartition, std::int64_t>{{p0, 0}});
  const auto now = steady::now();
  t.failed(p0, 4, 2, now + 10s);
  t.offsets_lost();
  const auto l = t.offsets_loaded({{p0, 4}}, now);
  EXPECT_FALSE(has(l.resume, p0)) << "the failed message would run again at once";
  EXPECT_EQ(phase_of(t, p0), phase::waiting);
  EXPECT_TRUE(has(t.due(now + 10s).resume, p0));
}

TEST(InboxRetryDelay, DoublesFromMinUpToMaxWithJitter) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 50; ++i) {
    const auto d1 = txbox::inbox::retry_delay(1, 100ms, 1000ms, rng);
    EXPECT_GE(d1, 50ms);
    EXPECT_LE(d1, 100ms);
    const auto d3 = txbox::inbox::retry_delay(3, 100ms, 1000ms, rng);
    EXPECT_GE(d3, 200ms);
    EXPECT_LE(d3, 400ms);
    const auto d20 = txbox::inbox::retry_delay(20, 100ms, 1000ms, rng);
    EXPECT_GE(d20, 500ms);
    EXPECT_LE(d20, 1000ms);
  }
}

}  // namespace
