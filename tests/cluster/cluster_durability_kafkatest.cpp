// --strict-durability on a real cluster, where durable topics can exist: it accepts a topic
// with replication factor 3, min.insync.replicas 2 and unclean election off, and refuses each
// weakness on its own (exit 5 at start; rows of a weak topic that appears later are held
// while the durable topic's rows go out).
#include <gtest/gtest.h>

#include <fstream>
#include <pqxx/pqxx>
#include <thread>

#include "cluster.hpp"
#include "harness.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace txbox::cluster {
namespace {

class ClusterDurability : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = test::unique_name("cd");
    test::create_schema(schema_);
  }

  std::unique_ptr<test::Process> start_relay(const std::string& name) {
    return std::make_unique<test::Process>(
        std::vector<std::string>{
            "/usr/bin/env", "TXBOX_RELAY_POLL_INTERVAL_MS=200",
            "TXBOX_RELAY_RETRY_BACKOFF_MAX_MS=1000", test::program("txbox-relay"), "--database-url",
            test::endpoints().pg, "--schema", schema_, "--kafka-bootstrap-servers", bootstrap(),
            "--name", name, "--strict-durability"},
        "/tmp/" + test::unique_name(name) + ".log");
  }

  // Keyed by topic unless `key` is given: a held row holds the later rows of its key, never
  // the other keys of its shard.
  void enqueue(const std::string& topic, int count, const std::string& key = "") {
    pqxx::connection c(test::endpoints().pg);
    const Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    for (int i = 0; i < count; ++i) {
      ob.enqueue(tx,
                 {.topic = topic, .key = key.empty() ? topic : key, .payload = std::to_string(i)});
    }
    tx.commit();
  }

  // A key "k-N" in the shard of `key` (outbox.shard = hashtext(key) & 63).
  static std::string key_sharing_shard_with(const std::string& key) {
    pqxx::connection c(test::endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c),
                     "SELECT 'k-' || g FROM generate_series(0, 100000) g "
                     "WHERE hashtext('k-' || g) & 63 = hashtext($1) & 63 ORDER BY g LIMIT 1",
                     key)[0]
        .as<std::string>();
  }

  long pending(const std::string& topic) {
    pqxx::connection c(test::endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c),
                     "SELECT count(*) FROM " + schema_ + ".outbox WHERE topic = $1", topic)[0]
        .as<long>();
  }

  std::string schema_;
};

TEST_F(ClusterDurability, StrictAcceptsAReplicatedTopicAndPublishesIt) {
  const std::string topic = test::unique_name("durable");
  create_topic(topic, 2);  // RF 3; min.insync.replicas 2 and unclean off from the brokers
  enqueue(topic, 5);
  auto r = start_relay("strict-ok");
  ASSERT_TRUE(test::wait_until([&] { return pending(topic) == 0; }, 60s)) << r->output();
  EXPECT_EQ(test::read_records(bootstrap(), topic, 5, 30s).size(), 5u);
  EXPECT_NE(r->output().find("durability: topic '" + topic +
                             "' ok (replication.factor=3, min.insync.replicas=2, "
                             "unclean.leader.election.enable=false)"),
            std::string::npos)
      << r->output();
}

struct Weakness {
  const char* name;
  int rf;
  std::map<std::string, std::string> configs;
  const char* problem;  // as the relay names it
};

void PrintTo(const Weakness& w, std::ostream* os) {
  *os << w.name;
}

class ClusterDurabilityRefuses : public ClusterDurability,
                                 public ::testing::WithParamInterface<Weakness> {};

TEST_P(ClusterDurabilityRefuses, AtStartWithExitFive) {
  const auto& w = GetParam();
  const std::string topic = test::unique_name(w.name);
  create_topic(topic, 1, w.rf, w.configs);
  enqueue(topic, 2);
  auto r = start_relay("strict-refuses");
  EXPECT_EQ(r->wait(60s), 5) << r->output();
  EXPECT_NE(r->output().find("refusing to start (strict durability): topic '" + topic +
                             "': " + w.problem),
            std::string::npos)
      << r->output();
  EXPECT_EQ(pending(topic), 2);
  EXPECT_EQ(test::topic_size(topic), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Cluster, ClusterDurabilityRefuses,
    ::testing::Values(Weakness{"rf1", 1, {}, "replication.factor=1 (needs >= 3)"},
                      Weakness{"minisr1",
                               3,
                               {{"min.insync.replicas", "1"}},
                               "min.insync.replicas=1 (needs >= 2)"},
                      Weakness{"unclean",
                               3,
                               {{"unclean.leader.election.enable", "true"}},
                               "unclean.leader.election.enable=true (needs false)"}),
    [](const auto& p) { return std::string(p.param.name); });

// A weak topic whose rows appear after the start: they are held (retried, never dead-lettered)
// while a durable topic's rows go out, also those of a key in the weak key's shard (this test
// flaked when the two topic names, the keys, fell in one shard by chance: 1/64 per run).
TEST_P(ClusterDurabilityRefuses, LaterRowsOfTheTopicAreHeldWhileDurableOnesGoOut) {
  const auto& w = GetParam();
  const std::string durable = test::unique_name("durable");
  const std::string weak = test::unique_name(w.name);
  create_topic(durable, 1);
  create_topic(weak, 1, w.rf, w.configs);
  enqueue(durable, 3);
  auto r = start_relay("strict-held");
  ASSERT_TRUE(test::wait_until([&] { return pending(durable) == 0; }, 60s)) << r->output();
  enqueue(weak, 3);
  enqueue(durable, 3);
  enqueue(durable, 3, key_sharing_shard_with(weak));
  ASSERT_TRUE(test::wait_until([&] { return pending(durable) == 0; }, 60s)) << r->output();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(pending(weak), 3);
  EXPECT_EQ(test::topic_size(weak), 0u);
  pqxx::connection c(test::endpoints().pg);
  const auto err = pq::exec1(pqxx::nontransaction(c),
                             "SELECT last_error FROM " + schema_ +
                                 ".outbox WHERE topic = $1 ORDER BY id LIMIT 1",
                             weak)[0]
                       .as<std::string>("");
  EXPECT_NE(err.find("held by strict durability: topic '" + weak + "': " + w.problem),
            std::string::npos)
      << err;
  EXPECT_EQ(pqxx::nontransaction(c)
                .exec("SELECT count(*) FROM " + schema_ + ".outbox_dead")[0][0]
                .as<long>(),
            0);
  EXPECT_TRUE(r->running()) << r->output();
}

}  // namespace
}  // namespace txbox::cluster
