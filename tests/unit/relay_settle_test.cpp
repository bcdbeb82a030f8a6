// The relay's pure pieces: settle classification, fair share, retry backoff.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>

#include "lease_table.hpp"
#include "settle_plan.hpp"
#include "txbox/detail/backoff.hpp"

namespace {

using txbox::relay::classify_round;
using txbox::relay::Outcome;
using txbox::relay::Row;

Row row(std::int64_t id, int shard, const std::string& topic = "t", int attempts = 0,
        const std::string& key = "k") {
  Row r;
  r.id = id;
  r.shard = shard;
  r.key = key;
  r.topic = topic;
  r.attempts = attempts;
  r.created_epoch = 100;
  return r;
}

Outcome acked() {
  return Outcome::acked();
}
Outcome failed(rd_kafka_resp_err_t err) {
  return Outcome::failed(err, rd_kafka_err2str(err));
}

TEST(RelaySettle, AckedRowsAreDeletedAndCountedPerTopicWithTheirLatency) {
  const auto plan = classify_round({row(1, 0, "a"), row(2, 0, "b"), row(3, 5, "a")},
                                   {acked(), acked(), acked()}, 100.5);
  EXPECT_EQ(plan.delete_ids, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(plan.published.at("a"), 2u);
  EXPECT_EQ(plan.published.at("b"), 1u);
  ASSERT_EQ(plan.ack_latencies.size(), 3u);
  EXPECT_DOUBLE_EQ(plan.ack_latencies[0], 0.5);
  EXPECT_TRUE(plan.dead.empty());
  EXPECT_TRUE(plan.retry.empty());
  EXPECT_EQ(plan.transient, 0u);
}

TEST(RelaySettle, ATransientFailureStopsItsKeyOnlyAndIsRetriedWithItsAttempts) {
  const auto plan = classify_round(
      {row(1, 0), row(2, 0, "t", 3), row(3, 0), row(4, 1), row(5, 1)},
      {acked(), failed(RD_KAFKA_RESP_ERR__TRANSPORT), acked(), acked(), acked()}, 100);
  EXPECT_EQ(plan.delete_ids, (std::vector<std::int64_t>{1, 4, 5}));  // not 3: behind 2
  ASSERT_EQ(plan.retry.size(), 1u);
  EXPECT_EQ(plan.retry[0].id, 2);
  EXPECT_EQ(plan.retry[0].attempts, 3);
  EXPECT_EQ(plan.transient, 1u);
  EXPECT_EQ(plan.first_error, rd_kafka_err2str(RD_KAFKA_RESP_ERR__TRANSPORT));
  EXPECT_EQ(plan.stopped_keys, (std::set<txbox::relay::OrderKey>{{0, "k"}}));
}

TEST(RelaySettle, APermanentFailureIsDeadAndItsShardGoesOn) {
  const auto plan = classify_round({row(1, 2), row(2, 2)},
                                   {failed(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), acked()}, 100);
  ASSERT_EQ(plan.dead.size(), 1u);
  EXPECT_EQ(plan.dead[0].id, 1);
  EXPECT_EQ(plan.dead[0].error, rd_kafka_err2str(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
  EXPECT_EQ(plan.delete_ids, (std::vector<std::int64_t>{2}));
  EXPECT_EQ(plan.transient, 0u);
}

TEST(RelaySettle, AHeldRowIsRetriedNeverDeadAndStopsItsShardWithoutCountingAsAFailure) {
  std::vector<Outcome> d = {Outcome::held("held: weak topic"), Outcome::skipped("waits"), acked()};
  const auto plan = classify_round({row(1, 3, "weak"), row(2, 3, "weak"), row(3, 4)}, d, 100);
  ASSERT_EQ(plan.retry.size(), 1u);
  EXPECT_EQ(plan.retry[0].error, "held: weak topic");
  EXPECT_EQ(plan.held.at("weak"), 1u);
  EXPECT_EQ(plan.transient, 0u);
  EXPECT_TRUE(plan.dead.empty());
  EXPECT_EQ(plan.delete_ids, (std::vector<std::int64_t>{3}));
}

// A held or failed row holds the later rows of its key; the other keys of its shard are
// settled (they stayed in the outbox behind a weak topic's row: 1/64 of every other key).
TEST(RelaySettle, AHeldOrFailedRowHoldsItsKeyNotTheOtherKeysOfItsShard) {
  std::vector<Outcome> d = {Outcome::held("held: weak topic"),
                            failed(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), acked(), acked(), acked()};
  const auto plan =
      classify_round({row(1, 7, "weak", 0, "a"), row(2, 7, "missing", 0, "b"),
                      row(3, 7, "t", 0, "c"), row(4, 7, "t", 0, "a"), row(5, 7, "t", 0, "b")},
                     d, 100);
  EXPECT_EQ(plan.delete_ids, (std::vector<std::int64_t>{3}));  // not 4, 5: behind 1, 2
  ASSERT_EQ(plan.retry.size(), 2u);
  EXPECT_EQ(plan.retry[0].id, 1);
  EXPECT_EQ(plan.retry[1].id, 2);
}

TEST(RelaySettle, SkippedRowsAreLeftAloneAndAMissingReportIsTransient) {
  std::vector<Outcome> d = {Outcome::skipped("lease"),
                            Outcome::pending()};  // pending: given up at stop
  const auto plan = classify_round({row(1, 0), row(2, 1)}, d, 100);
  EXPECT_TRUE(plan.delete_ids.empty());
  ASSERT_EQ(plan.retry.size(), 1u);
  EXPECT_EQ(plan.retry[0].id, 2);
  EXPECT_EQ(plan.transient, 1u);
}

TEST(RelaySettle, AFatalProducerErrorIsRetriedNotDead) {
  const auto plan = classify_round({row(1, 0)}, {failed(RD_KAFKA_RESP_ERR__FATAL)}, 100);
  EXPECT_TRUE(plan.dead.empty());
  EXPECT_EQ(plan.retry.size(), 1u);
}

// Issue 25: a topic created after the relay started waited for a backoff that had grown to
// relay.retry_backoff_max_ms while it was missing.
TEST(RelaySettle, ARowWhoseTopicIsMissingIsRetriedWithinTheRecheckWhateverItsAttempts) {
  const auto plan = classify_round(
      {row(1, 0, "gone", 12), row(2, 1, "gone", 3), row(3, 2, "t", 12)},
      {failed(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), failed(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
       failed(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)},
      100);
  ASSERT_EQ(plan.retry.size(), 3u);
  EXPECT_EQ(plan.retry[0].at_most, txbox::relay::k_missing_topic_recheck);
  EXPECT_EQ(plan.retry[1].at_most, txbox::relay::k_missing_topic_recheck);
  EXPECT_EQ(plan.retry[2].at_most, std::chrono::milliseconds::max());  // the plain backoff
  EXPECT_EQ(plan.retry[0].attempts, 12);                               // still counted
}

TEST(RelaySettle, MismatchedSizesAreABug) {
  EXPECT_THROW(classify_round({row(1, 0)}, {}, 100), std::logic_error);
}

TEST(RelayFairShare, IsTheCeilingOfShardsOverLiveRelays) {
  using txbox::relay::fair_share;
  EXPECT_EQ(fair_share(1, 64), 64);
  EXPECT_EQ(fair_share(2, 64), 32);
  EXPECT_EQ(fair_share(3, 64), 22);
  EXPECT_EQ(fair_share(64, 64), 1);
  EXPECT_EQ(fair_share(100, 64), 1);
  EXPECT_EQ(fair_share(0, 64), 64);  // no heartbeat seen yet: counts as one
  EXPECT_EQ(fair_share(-3, 64), 64);
}

TEST(RelayBackoff, DoublesFromTheMinimumUpToTheMaximumWithJitter) {
  using namespace std::chrono_literals;
  std::mt19937_64 rng(7);
  for (int attempt = 0; attempt < 40; ++attempt) {
    const auto d = txbox::detail::backoff(attempt, 200ms, 30'000ms, rng);
    const double full = std::min(200.0 * std::pow(2.0, std::min(attempt, 30)), 30'000.0);
    EXPECT_GE(static_cast<double>(d.count()), full * 0.5 - 1) << attempt;
    EXPECT_LE(static_cast<double>(d.count()), full) << attempt;
  }
}

TEST(RelayBackoff, SleepEndsAtStop) {
  using namespace std::chrono_literals;
  std::stop_source stop;
  std::jthread t([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(txbox::detail::sleep_for(30s, stop.get_token()));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
