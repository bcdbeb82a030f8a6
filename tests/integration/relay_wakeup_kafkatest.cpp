// How an idle relay learns of new rows (migration V6): writers never NOTIFY; the relay probes
// the outbox's id sequence and the running transactions (relay/src/wake_pacer). The relays
// here run with the safety nets far away (poll_interval_ms 10 s, lease ticks every 10 s), so a
// row published within a second of its commit was found by the probe.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "relay_fixture.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::Process;
using txbox::test::RelayTest;
using steady = std::chrono::steady_clock;
// Well under the safety nets (10 s), well over what the probe takes (a few ms + the ack).
constexpr auto k_soon = 1500ms;

class RelayWakeup : public RelayTest {
 protected:
  void SetUp() override {
    lease_ttl_ms_ = 30'000;  // lease ticks every 10 s
    RelayTest::SetUp();
  }

  std::unique_ptr<Process> start_slow_polling_relay() {
    auto relay = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/env", "TXBOX_RELAY_POLL_INTERVAL_MS=10000",
                                 txbox::test::program("txbox-relay"), "--config", config(),
                                 "--name", "w"},
        "/tmp/" + txbox::test::unique_name("wakeup") + ".log");
    enqueue(1, 1, 1);  // started, shards taken, a first round published
    EXPECT_TRUE(wait_drained(30s)) << relay->output();
    return relay;
  }

  // How long after `since` the outbox became empty (polled every 5 ms, up to 15 s).
  std::chrono::milliseconds drained_after(steady::time_point since) {
    while (pending() > 0 && steady::now() - since < 15s) std::this_thread::sleep_for(5ms);
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - since);
  }
};

TEST_F(RelayWakeup, AMessageToAnIdleRelayIsPublishedSoonWithoutNotify) {
  auto relay = start_slow_polling_relay();
  std::this_thread::sleep_for(3s);  // idle: the probe has backed off to its slowest
  const auto committed = [&] {
    enqueue(1, 1, 1, 1);
    return steady::now();
  }();
  EXPECT_LT(drained_after(committed), k_soon) << relay->output();
  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(20s), 0) << relay->output();
}

// The writer inserts, then works for 2 s before it commits: the relay saw the sequence move
// and found nothing; it watches the transactions that were running and claims when one ends.
TEST_F(RelayWakeup, AWriterThatCommitsLongAfterItsInsertIsPublishedSoonAfterItsCommit) {
  auto relay = start_slow_polling_relay();
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox ob({.schema = schema_});
  pqxx::work tx(c);
  ob.enqueue(tx, {.topic = topic_, .key = "key-0", .payload = "key-0/1"});
  std::this_thread::sleep_for(2s);
  tx.commit();
  const auto committed = steady::now();
  EXPECT_LT(drained_after(committed), k_soon) << relay->output();
  const auto records = txbox::test::read_whole_topic(topic_);
  EXPECT_EQ(check_stream(records, 2), 0);
  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(20s), 0) << relay->output();
}

// A transaction that rolls back moves the sequence too: the relay claims, finds nothing, and
// the next writer's message is still found at once.
TEST_F(RelayWakeup, ARolledBackInsertDoesNotDelayTheNextMessage) {
  auto relay = start_slow_polling_relay();
  {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    ob.enqueue(tx, {.topic = topic_, .key = "key-0", .payload = "rolled back"});
    tx.abort();
  }
  std::this_thread::sleep_for(500ms);
  const auto committed = [&] {
    enqueue(1, 1, 1, 1);
    return steady::now();
  }();
  EXPECT_LT(drained_after(committed), k_soon) << relay->output();
  EXPECT_EQ(check_stream(txbox::test::read_whole_topic(topic_), 2), 0);
  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(20s), 0) << relay->output();
}

}  // namespace

// relay.listen_notify: an idle relay sleeps in a wait for a notification (probing off here,
// so each wait lasts up to 100 ms). SIGTERM interrupts that wait: on libpqxx 7,
// await_notification threw "Interrupted system call" and the relay exited as "unexpected
// error (bug)" without releasing its shards (they stayed owned until their lease expired).
// It must stop as from any other sleep: exit 0, its shards released at once.
TEST_F(RelayWakeup, AnIdleRelayListeningForNotifyStopsCleanlyOnSigterm) {
  for (int round = 0; round < 3; ++round) {
    const std::string name = "listening-" + std::to_string(round);
    Process relay({"/usr/bin/env", "TXBOX_RELAY_LISTEN_NOTIFY=true",
                   "TXBOX_RELAY_PROBE_INTERVAL_MS=0", "TXBOX_RELAY_POLL_INTERVAL_MS=10000",
                   txbox::test::program("txbox-relay"), "--config", config(), "--name", name},
                  "/tmp/" + txbox::test::unique_name("listening") + ".log");
    enqueue(1, 1, 1, round);
    ASSERT_TRUE(wait_drained(30s)) << relay.output();
    std::this_thread::sleep_for(300ms);  // idle, in the wait
    relay.signal(SIGTERM);
    EXPECT_EQ(relay.wait(20s), 0) << relay.output();
    pqxx::connection c(endpoints().pg);
    EXPECT_EQ(pq::exec1(pqxx::nontransaction(c),
                        "SELECT count(*) FROM " + schema_ +
                            ".outbox_leases WHERE owner = $1 AND expires_at > now()",
                        name)[0]
                  .as<long>(),
              0)
        << "the stopped relay still owns shards\n"
        << relay.output();
  }
}
