// txbox-relay's leases as operators meet them (issue 25): relays joining a running one
// mid-stream (no stale copy), and relay names (two live relays with one name would take each
// other's shards on every tick: the second refuses to start; a restart under the name of a
// killed run joins).
#include <gtest/gtest.h>
#include <signal.h>

#include <pqxx/pqxx>
#include <thread>

#include "relay_fixture.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::read_whole_topic;
using txbox::test::RelayTest;
using txbox::test::topic_size;

class RelayLeases : public RelayTest {
 protected:
  long query(const std::string& sql) {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c), sql)[0].as<long>();
  }
  long owned_by(const std::string& name) {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c),
                     "SELECT count(*) FROM " + schema_ +
                         ".outbox_leases WHERE owner = $1 AND expires_at > now()",
                     name)[0]
        .as<long>();
  }
  // The sum of the shards' epochs: it moves whenever a shard changes hands.
  long epochs() {
    return query("SELECT coalesce(sum(epoch), 0) FROM " + schema_ + ".outbox_leases");
  }
};

// Scale-out while a backlog streams: a relay alone whose acknowledgements come slowly (its
// client holds each batch 1.5 s: linger.ms), then two more joining; the first gives shards
// back as they join, those with rows in flight only once settled. Per key: in order, no
// stale copy in the log, and no duplicate either: nothing failed, so nothing is sent twice
// (the old lease tick gave shards with rows in flight to the newcomers, which sent them
// again: 3,928 duplicates in one run).
TEST_F(RelayLeases, RelaysJoiningMidStreamLeaveNoStaleCopy) {
  const auto cfg = config("batch_size = 200");
  constexpr int total = 20'000;
  enqueue(total, 64, 500);
  auto a = start_relay("a", config("batch_size = 200", "", "\"linger.ms\" = 1500\n"));
  ASSERT_TRUE(txbox::test::wait_until([&] { return topic_size(topic_) >= 2'000; }, 60s))
      << a->output();
  auto b = start_relay("b", cfg);
  ASSERT_TRUE(txbox::test::wait_until([&] { return owned_by("b") > 0; }, 30s)) << b->output();
  auto c = start_relay("c", cfg);
  ASSERT_TRUE(wait_drained(120s)) << a->output() << b->output() << c->output();
  const int dups = check_stream(read_whole_topic(topic_), total);
  EXPECT_EQ(dups, 0) << "rows in flight sent again by a relay that joined";
  std::cout << "duplicates after scale-out (exact re-sends): " << dups
            << ", stale copies: " << stale_ << "; ticks of a that kept shards in flight: "
            << txbox::test::occurrences(a->output(), "kept until their rows in flight settle")
            << "\n";
  for (auto* p : {a.get(), b.get(), c.get()}) p->signal(SIGTERM);
  for (auto* p : {a.get(), b.get(), c.get()}) EXPECT_EQ(p->wait(20s), 0) << p->output();
}

// Issue 25, defect 7: a second relay started with the name of a live one (a shared
// TXBOX_RELAY_NAME, or host:pid repeated by two containers) exits 3 naming it, and the first
// keeps its shards: no epoch moves.
TEST_F(RelayLeases, ASecondRelayWithALiveRelaysNameRefusesToStartNamingIt) {
  const auto cfg = config();
  auto a = start_relay("twin", cfg);
  ASSERT_TRUE(txbox::test::wait_until([&] { return owned_by("twin") == 64; }, 30s)) << a->output();
  const long before = epochs();
  auto b = start_relay("twin", cfg);
  EXPECT_EQ(b->wait(30s), 3) << b->output();
  EXPECT_NE(b->output().find("another relay named 'twin' is live"), std::string::npos)
      << b->output();
  EXPECT_NE(b->output().find("TXBOX_RELAY_NAME"), std::string::npos) << b->output();
  EXPECT_EQ(epochs(), before) << "the shards changed hands\n" << a->output() << b->output();
  EXPECT_TRUE(a->running()) << a->output();
  enqueue(300, 10, 30);
  ASSERT_TRUE(wait_drained(60s)) << a->output();
  EXPECT_EQ(check_stream(read_whole_topic(topic_), 300), 0);
  EXPECT_EQ(epochs(), before) << "the shards changed hands\n" << a->output();
  a->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0) << a->output();
}

// The name of a relay that was killed is free at once: its heartbeat no longer moves, and a
// restart under that name (a unit restarted, a container with a fixed name) joins within
// half a lease ttl and publishes.
TEST_F(RelayLeases, ARestartUnderTheNameOfAKilledRelayJoins) {
  lease_ttl_ms_ = 10'000;  // a watch of 5 s: long enough to tell a stop served from a sleep
  const auto cfg = config();
  auto a = start_relay("solo", cfg);
  ASSERT_TRUE(txbox::test::wait_until([&] { return owned_by("solo") == 64; }, 30s)) << a->output();
  a->signal(SIGKILL);
  EXPECT_EQ(a->wait(10s), 128 + SIGKILL);
  // While it watches the name's heartbeat, a stop request is served at once (not after ttl/2).
  {
    auto b = start_relay("solo", cfg);
    ASSERT_TRUE(txbox::test::wait_until(
        [&] { return b->output().find("waiting") != std::string::npos; }, 30s))
        << b->output();
    const auto asked = std::chrono::steady_clock::now();
    b->signal(SIGTERM);
    EXPECT_EQ(b->wait(20s), 0) << b->output();
    EXPECT_LT(std::chrono::steady_clock::now() - asked, 2s) << b->output();
  }
  auto a2 = start_relay("solo", cfg);
  enqueue(300, 10, 30);
  ASSERT_TRUE(wait_drained(60s)) << a2->output();
  EXPECT_TRUE(a2->running()) << a2->output();
  EXPECT_NE(a2->output().find("its heartbeat stopped"), std::string::npos) << a2->output();
  EXPECT_EQ(check_stream(read_whole_topic(topic_), 300), 0);
  a2->signal(SIGTERM);
  EXPECT_EQ(a2->wait(20s), 0) << a2->output();
}

}  // namespace
