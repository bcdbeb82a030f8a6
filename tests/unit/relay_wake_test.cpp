// The relay's wake-up pacing (relay/src/wake_pacer): when an idle relay claims again, from the
// probe's readings of the outbox's id sequence and the running transactions.
#include <gtest/gtest.h>

#include <stdexcept>

#include "wake_pacer.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::DbSnapshot;
using txbox::relay::ProbeReading;
using txbox::relay::WakeOptions;
using txbox::relay::WakePacer;

const clock::time_point t0{};

ProbeReading reading(std::int64_t last_value, const char* snapshot = "100:100:") {
  return {last_value, DbSnapshot::parse(snapshot)};
}

// A pacer that has seen the sequence at 10 and just claimed (nothing found).
WakePacer started(WakeOptions o = {}) {
  WakePacer p(o, t0);
  EXPECT_FALSE(p.probed(t0, reading(10)));
  p.claimed(t0, false);
  return p;
}

TEST(RelayWake, ParsesPgSnapshotText) {
  const auto s = DbSnapshot::parse("748:752:748,750");
  EXPECT_EQ(s.xmin, 748u);
  EXPECT_EQ(s.xmax, 752u);
  EXPECT_EQ(s.xip, (std::vector<std::uint64_t>{748, 750}));
  EXPECT_TRUE(DbSnapshot::parse("5:5:").xip.empty());
  EXPECT_THROW(DbSnapshot::parse("5:5"), std::invalid_argument);
  EXPECT_THROW(DbSnapshot::parse("5:x:"), std::invalid_argument);
  EXPECT_THROW(DbSnapshot::parse("5:6:7,"), std::invalid_argument);
}

TEST(RelayWake, ATransactionHasEndedBelowXminAndBetweenWhenNotListed) {
  const auto s = DbSnapshot::parse("748:752:748,750");
  EXPECT_TRUE(s.ended(700));
  EXPECT_FALSE(s.ended(748));
  EXPECT_TRUE(s.ended(749));
  EXPECT_FALSE(s.ended(750));
  EXPECT_TRUE(s.ended(751));
  EXPECT_FALSE(s.ended(752));  // not started yet
}

TEST(RelayWake, AnInsertMakesAClaimDueAtOnce) {
  auto p = started();
  EXPECT_TRUE(p.probed(t0 + 5ms, reading(11)));
}

TEST(RelayWake, NothingNewMakesNoClaimAndTheProbeBacksOffToItsMaximum) {
  auto p = started({.probe_min = 1ms, .probe_max = 10ms, .poll_interval = 10s});
  auto now = t0;
  std::vector<clock::duration> gaps;
  for (int i = 0; i < 6; ++i) {
    now = p.next_probe();
    EXPECT_FALSE(p.probed(now, reading(10))) << "probe " << i;
    gaps.push_back(p.next_probe() - now);
  }
  EXPECT_EQ(gaps, (std::vector<clock::duration>{4ms, 8ms, 10ms, 10ms, 10ms, 10ms}));
}

// After an insert the relay probes every millisecond for k_hot, and claims only on a sign of
// the commit (here none comes).
TEST(RelayWake, AfterAnInsertTheProbeStaysFastForAWhileWithoutClaiming) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11)));
  auto now = moved;
  while (p.next_probe() < moved + WakePacer::k_hot) {
    now = p.next_probe();
    EXPECT_EQ(p.next_probe() - (now - 1ms), clock::duration(1ms));
    EXPECT_FALSE(p.probed(now, reading(11)));
  }
  EXPECT_FALSE(p.probed(now = p.next_probe(), reading(11)));
  EXPECT_EQ(p.next_probe() - now, clock::duration(2ms)) << "backing off after k_hot";
}

// W inserted while older than some completed transaction: it is listed in xip, watched, and
// its end is the sign, however late.
TEST(RelayWake, AWriterListedAsRunningWakesTheRelayWhenItEndsHoweverLate) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "104:106:104,105")));  // 105 inserted, runs on
  EXPECT_EQ(p.watched(), 2u);
  auto now = moved;
  for (int i = 0; i < 60; ++i) {
    EXPECT_FALSE(p.probed(now = p.next_probe(), reading(11, "104:106:104,105"))) << i;
  }
  EXPECT_LT(now, moved + 500ms);
  EXPECT_TRUE(p.probed(now = p.next_probe(), reading(11, "104:106:104"))) << "105 ended";
  EXPECT_EQ(p.watched(), 1u);
  EXPECT_EQ(p.next_probe() - now, clock::duration(1ms)) << "probing fast again";
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "106:106:"))) << "104 ended";
  EXPECT_EQ(p.watched(), 0u);
}

// The snapshot lists only running transactions older than the newest completed one: a writer
// newer than that (the usual case on a quiet database) is not in xip. Its commit makes it the
// newest completed: xmax advances.
TEST(RelayWake, AWriterNewerThanEveryCompletedTransactionWakesTheRelayWhenItCommits) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "773:773:")));  // 773 inserted, runs on
  EXPECT_EQ(p.watched(), 0u);
  auto now = moved;
  for (int i = 0; i < 60; ++i) {
    EXPECT_FALSE(p.probed(now = p.next_probe(), reading(11, "773:773:"))) << i;
  }
  EXPECT_LT(now, moved + 500ms);
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "774:774:"))) << "773 committed";
}

// W (100) was the newest when the sequence moved; then a newer transaction (101, e.g. the
// relay's own settle) completed: a sign (claim, nothing yet), and from then on W is listed in
// xip, watched, and its commit is the next sign. (The first design missed this: the e2e
// benchmark's p99 at 10% load was 4.5x NOTIFY's.)
TEST(RelayWake, AWriterOvertakenByANewerCompletedTransactionIsWatchedFromThenOn) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "100:100:")));
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "100:102:100"))) << "101 completed";
  EXPECT_EQ(p.watched(), 1u);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(p.probed(p.next_probe(), reading(11, "100:102:100")));
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "102:102:"))) << "100 committed";
}

TEST(RelayWake, AfterTheHorizonTransactionsAreNoLongerSigns) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "773:773:")));
  EXPECT_TRUE(p.probed(moved + 499ms, reading(11, "774:775:774")));
  EXPECT_FALSE(p.probed(moved + 500ms, reading(11, "790:790:"))) << "poll_interval after the move";
  EXPECT_EQ(p.watched(), 0u);
}

TEST(RelayWake, TransactionsEndingBeforeAnyInsertAreNoSign) {
  auto p = started();
  EXPECT_FALSE(p.probed(t0 + 600ms, reading(10, "104:106:104,105")));
  EXPECT_EQ(p.watched(), 0u);
  EXPECT_FALSE(p.probed(t0 + 610ms, reading(10, "106:107:")));
}

TEST(RelayWake, AWriterHalfWayWhenTheRelayStartsWakesItWhenItEnds) {
  WakePacer p({}, t0);
  EXPECT_FALSE(p.probed(t0, reading(10, "104:105:104")));
  p.claimed(t0, false);
  EXPECT_FALSE(p.probed(p.next_probe(), reading(10, "104:105:104")));
  EXPECT_TRUE(p.probed(p.next_probe(), reading(10, "105:105:")));
}

TEST(RelayWake, FoundRowsMeanBusyTheNextProbeComesSoon) {
  auto p = started({.probe_min = 1ms, .probe_max = 10ms, .poll_interval = 10s});
  for (int i = 0; i < 8; ++i) p.probed(p.next_probe(), reading(10));
  const auto now = p.next_probe();
  p.claimed(now, true);
  EXPECT_EQ(p.next_probe() - now, clock::duration(1ms));
}

TEST(RelayWake, PollIntervalIsTheSafetyNetWhateverTheProbeSees) {
  auto p = started({.probe_min = 1ms, .probe_max = 10ms, .poll_interval = 500ms});
  EXPECT_FALSE(p.poll_due(t0 + 499ms));
  EXPECT_TRUE(p.poll_due(t0 + 500ms));
  EXPECT_EQ(p.next_event(), p.next_probe());
  p.claimed(t0 + 500ms, false);
  EXPECT_FALSE(p.poll_due(t0 + 600ms));
}

TEST(RelayWake, WithoutAProbeOnlyThePollIntervalPaces) {
  WakePacer p({.probe_min = 0ms, .probe_max = 0ms, .poll_interval = 200ms}, t0);
  EXPECT_FALSE(p.probing());
  EXPECT_EQ(p.next_event(), t0 + 200ms);
}

TEST(RelayWake, TheSequenceGoingBackIsAMoveToo) {  // ALTER SEQUENCE ... RESTART, a restore
  auto p = started();
  EXPECT_TRUE(p.probed(p.next_probe(), reading(3)));
}

}  // namespace
