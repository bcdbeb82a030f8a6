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

TEST(RelayWake, AfterAnInsertTheNextProbesClaimForItsCommit) {
  auto p = started();
  EXPECT_TRUE(p.probed(t0 + 1ms, reading(11)));
  p.claimed(t0 + 1ms, false);  // not committed yet
  auto now = t0 + 1ms;
  for (int i = 0; i < WakePacer::k_rechecks; ++i) {
    now = p.next_probe();
    EXPECT_TRUE(p.probed(now, reading(11))) << "recheck " << i;
  }
  EXPECT_FALSE(p.probed(p.next_probe(), reading(11)));
}

TEST(RelayWake, AWriterStillRunningWhenItsInsertWasSeenWakesTheRelayWhenItEndsHoweverLate) {
  auto p = started();
  // xid 105 inserted (the sequence moved) and runs on; 104 is some other transaction.
  EXPECT_TRUE(p.probed(t0 + 1ms, reading(11, "104:106:104,105")));
  EXPECT_EQ(p.watched(), 2u);
  auto now = t0 + 1ms;
  for (int i = 0; i < WakePacer::k_rechecks; ++i)
    p.probed(now = p.next_probe(), reading(11, "104:106:104,105"));
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(p.probed(now = p.next_probe(), reading(11, "104:106:104,105"))) << i;
  }
  EXPECT_TRUE(p.probed(now = p.next_probe(), reading(11, "104:107:104,106"))) << "105 ended";
  EXPECT_EQ(p.watched(), 1u);
  EXPECT_EQ(p.next_probe() - now, clock::duration(1ms)) << "probing fast again";
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "107:107:"))) << "104 ended";
  EXPECT_EQ(p.watched(), 0u);
}

TEST(RelayWake, TransactionsRunningBeforeAnyInsertAreNotWatched) {
  auto p = started();
  EXPECT_FALSE(p.probed(t0 + 600ms, reading(10, "104:106:104,105")));
  EXPECT_EQ(p.watched(), 0u);
  EXPECT_FALSE(p.probed(t0 + 610ms, reading(10, "106:106:")));
}

// The snapshot lists only running transactions older than the newest completed one: a writer
// newer than that (the usual case on a quiet database) is not in xip. Its commit advances
// xmax: for poll_interval after a move, that is a sign.
TEST(RelayWake, AWriterNewerThanEveryCompletedTransactionWakesTheRelayWhenItCommits) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "773:773:")));  // 773 inserted, runs on
  EXPECT_EQ(p.watched(), 0u);
  auto now = moved;
  for (int i = 0; i < WakePacer::k_rechecks; ++i)
    p.probed(now = p.next_probe(), reading(11, "773:773:"));
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(p.probed(now = p.next_probe(), reading(11, "773:773:"))) << i;
  }
  EXPECT_LT(now, moved + 500ms);
  EXPECT_TRUE(p.probed(p.next_probe(), reading(11, "774:774:"))) << "773 committed";
}

TEST(RelayWake, NewerTransactionsCompletingLongAfterTheLastMoveAreNoSign) {
  auto p = started();
  const auto moved = t0 + 1s;
  EXPECT_TRUE(p.probed(moved, reading(11, "773:773:")));
  for (int i = 0; i < WakePacer::k_rechecks; ++i) p.probed(p.next_probe(), reading(11, "773:773:"));
  EXPECT_TRUE(p.probed(moved + 499ms, reading(11, "774:774:")));
  EXPECT_FALSE(p.probed(moved + 500ms, reading(11, "790:790:"))) << "poll_interval after the move";
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
