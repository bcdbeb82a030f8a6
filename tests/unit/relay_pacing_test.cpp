// The at_least_once pipeline's pacing rules (pipeline_pacing.hpp), each at its boundary, with
// the clock injected as time points; the stop grace as the producer's options set it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <chrono>
#include <optional>

#include "delivery_mode.hpp"
#include "pipeline_pacing.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
namespace pacing = txbox::relay::pacing;

const clock::time_point t0 = clock::time_point{} + 1h;

TEST(RelayPacing, RoundRowsAreTheBatchPerShardOwnedAndOneShardAtLeast) {
  EXPECT_EQ(pacing::round_rows(500, 4), 2000u);
  EXPECT_EQ(pacing::round_rows(500, 1), 500u);
  EXPECT_EQ(pacing::round_rows(500, 0), 500u);  // no shard yet: one round's rows
}

TEST(RelayPacing, RoomForARoundUpToARoundsRowsAndHalfTheBatchBytes) {
  constexpr std::size_t round = 1000, max_bytes = 1000;
  EXPECT_TRUE(pacing::room_for_round(0, 0, round, max_bytes));
  EXPECT_TRUE(pacing::room_for_round(round, max_bytes / 2, round, max_bytes));  // both at the edge
  EXPECT_FALSE(pacing::room_for_round(round + 1, 0, round, max_bytes));
  EXPECT_FALSE(pacing::room_for_round(0, max_bytes / 2 + 1, round, max_bytes));
}

TEST(RelayPacing, ClaimIsDueAtOnceUnlessTheLastClaimWasEmpty) {
  int asked = 0;
  const auto work = [&](bool answer) {
    return [&asked, answer] {
      ++asked;
      return answer;
    };
  };
  EXPECT_TRUE(pacing::claim_due(std::nullopt, work(false)));
  EXPECT_EQ(asked, 0) << "the wake-up (which may block for a probe) is not asked";
  EXPECT_FALSE(pacing::claim_due(t0, work(false)));
  EXPECT_TRUE(pacing::claim_due(t0, work(true)));
  EXPECT_EQ(asked, 2);
}

TEST(RelayPacing, NothingAcknowledgedIsNeverSettled) {
  EXPECT_FALSE(pacing::settle_due(0, 0, 1000, t0 + 1h, t0));
  EXPECT_FALSE(pacing::settle_due(10, 10, 1000, t0 + 1h, t0));
}

TEST(RelayPacing, EverythingInIsSettledAtOnce) {
  EXPECT_TRUE(pacing::settle_due(10, 0, 1000, t0, t0));
}

TEST(RelayPacing, AFewAcknowledgedRowsWaitForMoreAtMostTheSettleDelay) {
  // 10 of 100 in, a round of 1000 rows: fewer than half a round, reports still to come.
  EXPECT_FALSE(pacing::settle_due(100, 90, 1000, t0, t0));
  EXPECT_FALSE(pacing::settle_due(100, 90, 1000, t0 + pacing::k_settle_delay - 1ns, t0));
  EXPECT_TRUE(pacing::settle_due(100, 90, 1000, t0 + pacing::k_settle_delay, t0));
  EXPECT_EQ(pacing::k_settle_delay, 10ms);
}

TEST(RelayPacing, HalfARoundAcknowledgedIsSettledAtOnce) {
  EXPECT_FALSE(pacing::settle_due(1000, 501, 1000, t0, t0));  // 499 in
  EXPECT_TRUE(pacing::settle_due(1000, 500, 1000, t0, t0));   // 500 in: half of the round
}

TEST(RelayPacing, PurgedRowsAreAbandonedTenSecondsAfterTheGiveUp) {
  EXPECT_FALSE(pacing::abandon_due(std::nullopt, t0 + 1h));
  EXPECT_FALSE(pacing::abandon_due(t0, t0));
  EXPECT_FALSE(pacing::abandon_due(t0, t0 + 10s));
  EXPECT_TRUE(pacing::abandon_due(t0, t0 + 10s + 1ns));
}

TEST(RelayPacing, TheReportTimerRestartsWhenReportsComeOrNoneIsPending) {
  EXPECT_EQ(pacing::report_mark(t0, true, 5, t0 + 1s), t0 + 1s);
  EXPECT_EQ(pacing::report_mark(t0, false, 0, t0 + 1s), t0 + 1s);
  EXPECT_EQ(pacing::report_mark(t0, false, 5, t0 + 1s), t0);
}

TEST(RelayPacing, ReportsStallAfterALeaseTtlWithoutOne) {
  EXPECT_FALSE(pacing::reports_stalled(t0, t0 + 10s, 10s));
  EXPECT_TRUE(pacing::reports_stalled(t0, t0 + 10s + 1ns, 10s));
}

TEST(RelayPacing, TheStopGraceLastsWhileReportsAreMissingUntilItsEnd) {
  EXPECT_TRUE(pacing::stop_grace_left(1, t0, t0 + 5s));
  EXPECT_TRUE(pacing::stop_grace_left(1, t0 + 5s - 1ns, t0 + 5s));
  EXPECT_FALSE(pacing::stop_grace_left(1, t0 + 5s, t0 + 5s));
  EXPECT_FALSE(pacing::stop_grace_left(0, t0, t0 + 5s));
}

TEST(RelayPacing, TheStopGraceIsTheProducersFiveSeconds) {
  txbox::RelayConfig cfg;
  cfg.lease_ttl = 30s;  // the grace does not follow the lease
  EXPECT_EQ(txbox::relay::producer_options(cfg).stop_grace, 5s);
}

// Whatever the book holds, an acknowledged row waits at most k_settle_delay for its settle,
// and a settle once due stays due as time passes.
RC_GTEST_PROP(RelayPacing, AnAcknowledgedRowWaitsAtMostTheSettleDelay, ()) {
  const auto rows = *rc::gen::inRange<std::size_t>(1, 5000);
  const auto pending = *rc::gen::inRange<std::size_t>(0, rows);  // at least one row in
  const auto round = *rc::gen::inRange<std::size_t>(1, 5000);
  const auto since = std::chrono::microseconds(*rc::gen::inRange<int>(0, 100'000));
  const auto later = std::chrono::microseconds(*rc::gen::inRange<int>(0, 100'000));
  const bool due = pacing::settle_due(rows, pending, round, t0 + since, t0);
  if (since >= pacing::k_settle_delay) RC_ASSERT(due);
  if (due) RC_ASSERT(pacing::settle_due(rows, pending, round, t0 + since + later, t0));
}

}  // namespace
