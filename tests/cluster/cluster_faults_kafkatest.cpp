// The storage-stage failures of docs/reliability.md on a replicated cluster (3 brokers,
// replication factor 3, min.insync.replicas 2, unclean election off), each with two relays,
// a txbox::inbox consumer and writers running: a leader killed twice, the ISR shrunk below
// min.insync.replicas, and a broker's disk lost. Lost, duplicate effects, per-key order
// violations and stale copies in the log must all be 0, and no relay or consumer may need a
// restart.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

#include "log_audit.hpp"
#include "relay_support.hpp"
#include "scenario.hpp"
#include "servers.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::cluster {
namespace {

class ClusterFaults : public ::testing::Test {
 protected:
  // Every test starts and ends on a whole cluster, whatever the one before did.
  void SetUp() override { restore_all(); }
  void TearDown() override { restore_all(); }

  static void expect_clean(Scenario& s, const std::string& what) {
    std::string why;
    EXPECT_TRUE(s.drain(180s, why)) << what << ": the pipeline did not drain: " << why;
    const auto v = s.verdict();
    EXPECT_GT(v.committed, 0);
    EXPECT_EQ(v.lost, 0) << what;
    EXPECT_EQ(v.duplicate_effects, 0) << what;
    EXPECT_EQ(v.order_violations, 0) << what;
    EXPECT_EQ(v.phantom, 0) << what;
    EXPECT_EQ(v.outbox_left, 0) << what;
    EXPECT_EQ(v.outbox_dead, 0) << what << ": nothing may be dead-lettered";
    EXPECT_EQ(v.inbox_dead, 0) << what;
    for (const auto& d : v.details) ADD_FAILURE() << d;
    // The log itself (issue 25): no stale copy leaving its key behind, though elections slow
    // the acknowledgements while the relays' lease ticks run (nothing stalls a relay here).
    const auto log = chaos::audit_log(bootstrap(), s.topic(),
                                      static_cast<int>(describe(s.topic()).size()), 10, 120);
    for (const auto& b : log.behind)
      ADD_FAILURE() << what << ": a stale copy in the log:\n" << b.example;
    EXPECT_TRUE(s.all_running()) << what << ": a relay or the consumer exited";
    std::cout << fmt::format(
                     "[cluster] {}: committed {}, applied {}, Kafka records {} (re-sent {}), "
                     "lost {}, duplicate effects {}, order violations {}\n",
                     what, v.committed, v.applied_distinct, v.kafka_records,
                     v.kafka_records - v.committed, v.lost, v.duplicate_effects, v.order_violations)
              << std::flush;
  }
};

// The leader of a partition killed with SIGKILL while the relays publish, started again ten
// seconds later; then the new leader killed the same way. The relays follow the new leaders
// (librdkafka's metadata refresh) without a restart; the stall each kill caused is printed.
TEST_F(ClusterFaults, LeaderKillTwiceWhilePublishingLosesNothing) {
  // Paced to write for 150 s, stopped after the second kill: the kills fall while messages
  // flow however slow the machine is.
  Scenario s("cl_leader", {.messages = 30000, .write_seconds = 150});
  s.start_writing();
  std::this_thread::sleep_for(8s);
  for (int round = 0; round < 2; ++round) {
    const int leader = describe(s.topic()).at(0).leader;
    ASSERT_GE(leader, 1) << "partition 0 has no leader";
    s.mark(fmt::format("kill -9 broker {} (leader of partition 0)", leader));
    node("node-kill", leader);
    std::this_thread::sleep_for(10s);
    node("node-start", leader);
    ASSERT_TRUE(wait_partitions(s.topic(), fully_in_sync, 60s)) << "broker did not rejoin";
    std::this_thread::sleep_for(2s);
  }
  s.stop_writing();
  s.wait_writers(120s);
  expect_clean(s, "leader kill x2");
  for (std::size_t i = 0; i < 2; ++i) {
    const double stall = s.stall_after(i);
    EXPECT_GE(stall, 0) << "the relays never published after leader kill " << i + 1;
    std::cout << fmt::format("[cluster] leader kill {}: publishing stalled {:.1f} s\n", i + 1,
                             stall);
  }
}

// Two of the three brokers stopped: the survivor leads every partition with an ISR of one,
// below min.insync.replicas=2, so it refuses acks=all writes (NOT_ENOUGH_REPLICAS). The rows
// stay in the outbox, nothing is dead-lettered, each relay says so (one log line per state
// change, txbox_relay_partitions_below_min_isr, /readyz 503); with the brokers back every
// message goes out, in order.
TEST_F(ClusterFaults, IsrBelowMinInsyncHoldsRowsUntilBrokersReturn) {
  Scenario s("cl_isr", {.messages = 3000, .write_seconds = 30});
  s.start_writing();
  std::this_thread::sleep_for(5s);
  const int survivor = describe(s.topic()).at(0).leader;
  ASSERT_GE(survivor, 1);
  std::vector<int> stopped;
  for (int n = 1; n <= 3; ++n) {
    if (n != survivor) stopped.push_back(n);
  }
  s.mark(
      fmt::format("kill -9 brokers {} and {} (broker {} stays)", stopped[0], stopped[1], survivor));
  for (int n : stopped) node("node-kill", n);
  const long published_at_stop = s.published();

  // Kafka fences the stopped brokers after broker.session.timeout.ms (9 s) and the relays
  // diagnose a round that waits longer than their lease TTL (10 s).
  const auto reported = [&](std::size_t i) {
    const auto m = s.http(i, "/metrics").second;
    return m.find("txbox_relay_partitions_below_min_isr 0") == std::string::npos &&
           m.find("txbox_relay_partitions_below_min_isr") != std::string::npos &&
           s.http(i, "/readyz").first == 503;
  };
  EXPECT_TRUE(test::wait_until([&] { return reported(0) && reported(1); }, 60s))
      << "relay 1 metrics:\n"
      << s.http(0, "/metrics").second << "\nrelay 1 log:\n"
      << s.relay_log(0);
  std::this_thread::sleep_for(5s);
  EXPECT_GT(s.outbox_rows(), 0) << "rows must wait in the outbox";
  EXPECT_EQ(s.outbox_dead_rows(), 0) << "a refused write is not a dead letter";
  EXPECT_LE(s.published() - published_at_stop, 600)
      << "acks=all writes went through with one in-sync replica";
  for (std::size_t i = 0; i < 2; ++i) {
    const auto log = s.relay_log(i);
    const int lines = test::occurrences(log, "NOT_ENOUGH_REPLICAS");
    EXPECT_GE(lines, 1) << "relay " << i + 1 << " did not say why:\n" << log;
    EXPECT_LE(lines, 3) << "relay " << i + 1 << " logs per attempt, not per state change:\n" << log;
  }

  s.mark("brokers started again");
  for (int n : stopped) node("node-start", n);
  s.wait_writers(120s);
  expect_clean(s, "ISR below min.insync.replicas");
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(s.http(i, "/readyz").first, 200) << "relay " << i + 1 << " not ready again";
    EXPECT_NE(s.http(i, "/metrics").second.find("txbox_relay_partitions_below_min_isr 0"),
              std::string::npos);
  }
  std::cout << fmt::format(
      "[cluster] ISR shrink: publishing resumed {:.1f} s after the brokers "
      "were started\n",
      s.stall_after(1));
}

// A broker's disk lost while the relays publish: the leader of partition 0 crashes, its data
// and metadata are wiped, it is formatted empty and started; it rejoins and re-replicates.
// Then another broker is killed, so every acks=all write needs the wiped one, and the wiped
// broker's replicas must reach the end of every partition (its replication-offset-checkpoint).
TEST_F(ClusterFaults, DiskLossRejoinsEmptyAndLosesNothingAcknowledged) {
  Scenario s("cl_disk", {.messages = 30000, .write_seconds = 150});  // stopped below
  s.start_writing();
  std::this_thread::sleep_for(6s);
  const int wiped = describe(s.topic()).at(0).leader;
  ASSERT_GE(wiped, 1);
  s.mark(fmt::format("broker {} (leader of partition 0) loses its disk", wiped));
  const auto t0 = std::chrono::steady_clock::now();
  node("node-wipe", wiped);
  ASSERT_TRUE(wait_partitions(s.topic(), fully_in_sync, 90s)) << "no full ISR after the wipe";
  const double rejoined = seconds_since(t0);
  const int other = wiped % 3 + 1;
  s.mark(fmt::format("kill -9 broker {}: every write needs the wiped broker {}", other, wiped));
  node("node-kill", other);
  std::this_thread::sleep_for(12s);
  node("node-start", other);
  s.stop_writing();
  s.wait_writers(120s);
  expect_clean(s, "disk loss");
  // Every record is on the wiped broker too: its high watermarks reach the end offsets.
  chaos::Kafka kafka(bootstrap());
  const auto ends = kafka.high_watermarks(s.topic(), 3, 10000);
  ASSERT_TRUE(ends);
  std::map<int, std::int64_t> on_wiped;
  const bool caught_up = test::wait_until(
      [&] {
        on_wiped = checkpointed_offsets(wiped, s.topic());
        for (int p = 0; p < 3; ++p) {
          if (on_wiped[p] != (*ends)[static_cast<std::size_t>(p)]) return false;
        }
        return true;
      },
      30s);
  EXPECT_TRUE(caught_up) << "the wiped broker's replicas do not reach the end offsets";
  std::cout << fmt::format(
      "[cluster] disk loss: broker {} back in every ISR {:.1f} s after the crash; its "
      "replicas reach the end offsets [{}]\n",
      wiped, rejoined, fmt::join(*ends, ", "));
}

}  // namespace
}  // namespace txbox::cluster
