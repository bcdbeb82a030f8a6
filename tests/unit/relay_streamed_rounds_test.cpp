// at_least_once's streamed rounds against librdkafka's mock cluster: rounds stay outstanding
// together, each report comes against its own round and row, give_up fails what is out.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "relay_mock_kafka.hpp"
#include "streamed_rounds.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::Outcome;
using txbox::relay::StreamedRounds;
using State = Outcome::State;

class RelayStreamedRounds : public txbox::relay::testing::MockKafka {};

// Pipelining: a round streamed while an earlier one waits for its leader stays outstanding;
// each report is booked against its own round and row.
TEST_F(RelayStreamedRounds, StreamedRoundsStayOutstandingTogetherAndReportAgainstTheirOwnRows) {
  StreamedRounds s(options());
  set_leader("late", -1);
  const auto a = s.stream(rows("late", 3), open_gates());
  const auto b = s.stream(rows("ok", 4, 100), open_gates());
  EXPECT_NE(a.round, b.round);
  EXPECT_EQ(count(a.outcomes, State::pending), 3u);
  EXPECT_EQ(s.streaming(), 7u);
  std::map<std::uint32_t, std::set<std::size_t>> acked;
  const auto collect = [&](std::chrono::milliseconds wait) {
    for (const auto& r : s.reports(wait)) {
      EXPECT_EQ(r.outcome.state(), State::acked);
      EXPECT_TRUE(acked[r.round].insert(r.index).second) << "a row reported twice";
    }
  };
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (acked[b.round].size() < 4 && std::chrono::steady_clock::now() < until) collect(50ms);
  EXPECT_EQ(acked[b.round], (std::set<std::size_t>{0, 1, 2, 3}));
  EXPECT_TRUE(acked[a.round].empty()) << "the first round has no leader yet";
  EXPECT_EQ(s.streaming(), 3u);
  set_leader("late", 1);
  while (acked[a.round].size() < 3 && std::chrono::steady_clock::now() < until) collect(50ms);
  EXPECT_EQ(acked[a.round], (std::set<std::size_t>{0, 1, 2}));
  EXPECT_EQ(s.streaming(), 0u);
  EXPECT_EQ(s.late_reports(), 0u);
}

// At stop after the grace (or after a fatal error) what is out is purged: every row of it
// gets a failed report, and nothing is left streaming.
TEST_F(RelayStreamedRounds, GiveUpFailsEveryRowStillOut) {
  StreamedRounds s(options());
  set_leader("cur", -1);
  const auto a = s.stream(rows("cur", 4), open_gates());
  EXPECT_EQ(s.streaming(), 4u);
  s.give_up();
  std::set<std::size_t> failed;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (failed.size() < 4 && std::chrono::steady_clock::now() < until) {
    for (const auto& r : s.reports(50ms)) {
      EXPECT_EQ(r.round, a.round);
      EXPECT_EQ(r.outcome.state(), State::failed);
      EXPECT_TRUE(r.outcome.retryable()) << r.outcome.error();
      failed.insert(r.index);
    }
  }
  EXPECT_EQ(failed.size(), 4u);
  EXPECT_EQ(s.streaming(), 0u);
  EXPECT_FALSE(s.fatal());
  EXPECT_FALSE(s.replace_if_fatal());
}

// Rows held or skipped at the hand-over are final at once and never reported.
TEST_F(RelayStreamedRounds, RowsNotHandedOverAreFinalAtOnce) {
  StreamedRounds s(options());
  auto r = rows("weak", 2);
  r[1].topic = "ok";
  r[1].key = "other";
  const auto a = s.stream(std::move(r), weak_held());
  EXPECT_EQ(a.outcomes[0].state(), State::held);
  EXPECT_TRUE(a.outcomes[0].final());
  EXPECT_EQ(s.streaming(), 1u);
  std::size_t reports = 0;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (s.streaming() > 0 && std::chrono::steady_clock::now() < until) {
    for (const auto& rep : s.reports(50ms)) {
      EXPECT_EQ(rep.index, 1u);
      ++reports;
    }
  }
  EXPECT_EQ(reports, 1u);
}

}  // namespace
