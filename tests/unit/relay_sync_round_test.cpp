// A lane's synchronous round against librdkafka's mock cluster: each report is booked against
// its own round's row, the round waits for its last report, a stop gives up after the grace.
#include <gtest/gtest.h>

#include <stop_token>

#include "relay_mock_kafka.hpp"
#include "sync_round.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::Outcome;
using txbox::relay::Producer;
using txbox::relay::SyncRound;
using State = Outcome::State;

class RelaySyncRound : public txbox::relay::testing::MockKafka {};

TEST_F(RelaySyncRound, ARoundIsAcknowledgedRowByRow) {
  Producer p(options());
  SyncRound round(p);
  const auto handed = round.send(rows("ok", 20), open_gates());
  EXPECT_EQ(handed.lease_short, 0u);
  const auto d = round.await({});
  ASSERT_EQ(d.size(), 20u);
  EXPECT_EQ(count(d, State::acked), 20u);
  EXPECT_TRUE(handed.rows[0].payload.empty());  // librdkafka copied it: freed
}

// Defect 3: a report of an earlier round never books against a row of the current round
// (the old relay matched reports by index into one shared vector).
TEST_F(RelaySyncRound, ALateReportOfAnEarlierRoundIsNotBookedAgainstTheCurrentRound) {
  Producer p(options());
  SyncRound round(p);
  set_leader("late", -1);
  set_leader("cur", -1);
  round.send(rows("late", 3), open_gates());
  EXPECT_FALSE(round.poll(300ms));                // no leader: waiting
  round.send(rows("cur", 3, 100), open_gates());  // a new round while the first is out
  set_leader("late", 1);
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (round.late_reports() < 3 && std::chrono::steady_clock::now() < until) {
    round.poll(100ms);
  }
  EXPECT_EQ(round.late_reports(), 3u);
  EXPECT_FALSE(round.poll(100ms)) << "a report of the first round completed the second";
  set_leader("cur", 1);
  const auto d = round.await({});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(count(d, State::acked), 3u);
  EXPECT_EQ(round.late_reports(), 3u);
}

TEST_F(RelaySyncRound, AtStopTheRoundIsGivenUpAfterTheGrace) {
  Producer p(options());
  SyncRound round(p);
  set_leader("cur", -1);
  round.send(rows("cur", 5), open_gates());
  std::stop_source stop;
  stop.request_stop();
  const auto t0 = std::chrono::steady_clock::now();
  const auto d = round.await({.stop = stop.get_token()});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(count(d, State::acked), 0u);
  EXPECT_EQ(d.size(), 5u);
}

// While nothing comes the round calls on_slow every slow_after (a diagnosis), and waits on.
TEST_F(RelaySyncRound, OnSlowIsCalledEachTimeNothingCameForSlowAfter) {
  Producer p(options());  // stop_grace 200 ms
  SyncRound round(p);
  set_leader("cur", -1);
  round.send(rows("cur", 2), open_gates());
  std::stop_source stop;
  stop.request_stop();
  int slow = 0;
  const auto d =
      round.await({.stop = stop.get_token(), .slow_after = 60ms, .on_slow = [&] { ++slow; }});
  EXPECT_GE(slow, 2);
  EXPECT_EQ(count(d, State::acked), 0u);
}

// After await every report of the round is late: the next round's rows are never completed
// by them, and a round with nothing handed over needs no wait.
TEST_F(RelaySyncRound, ARoundWithNothingHandedOverIsCompleteAtOnce) {
  Producer p(options());
  SyncRound round(p);
  auto r = rows("weak", 2);
  const auto handed = round.send(std::move(r), weak_held());
  EXPECT_EQ(handed.handed, 0u);
  EXPECT_TRUE(round.poll(0ms));
  const auto d = round.await({});
  EXPECT_EQ(count(d, State::held), 1u);
  EXPECT_EQ(count(d, State::skipped), 1u);
}

}  // namespace
