// txbox-relay's durability check of its target topics (replication factor, min.insync.replicas,
// unclean leader election), against the single-node test broker: every topic there has
// replication factor 1 and min.insync.replicas 1, so every topic is weak.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::occurrences;
using txbox::test::Process;
using txbox::test::topic_size;
using txbox::test::wait_until;

// The log line that contains `needle`, or "" when none does.
std::string line_with(const std::string& log, const std::string& needle) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

class RelayDurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("rd");
    topic_ = txbox::test::unique_name("weak_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 2);  // replication factor 1: the broker has one node
  }

  // A TOML config for this test's schema; `relay_extra` goes into [relay].
  std::string config(const std::string& relay_extra = "") {
    const std::string path = "/tmp/" + txbox::test::unique_name("durability") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << endpoints().pg << "\"\nschema = \"" << schema_
      << "\"\n[relay]\nlease_ttl_ms = 3000\npoll_interval_ms = 200\nretry_backoff_min_ms = 100\n"
         "retry_backoff_max_ms = 1000\n"
      << relay_extra << "\n[kafka]\n\"bootstrap.servers\" = \"" << endpoints().kafka << "\"\n";
    return path;
  }

  std::unique_ptr<Process> start_relay(const std::string& name, const std::string& cfg,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {txbox::test::program("txbox-relay"), "--config", cfg, "--name",
                                     name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, "/tmp/" + txbox::test::unique_name(name) + ".log");
  }

  // `count` messages to `topic` with one key, payloads "0", "1", ...
  void enqueue(const std::string& topic, int count) {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    for (int i = 0; i < count; ++i) {
      ob.enqueue(tx, {.topic = topic, .key = "k", .payload = std::to_string(i)});
    }
    tx.commit();
  }

  long query_long(const std::string& sql) {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c), sql)[0].as<long>();
  }
  long pending() { return query_long("SELECT count(*) FROM " + schema_ + ".outbox"); }

  std::string schema_;
  std::string topic_;
};

TEST_F(RelayDurabilityTest, NormalStartWarnsOnceNamingTheTopicAndItsReplicationFactor) {
  const std::string listed = txbox::test::unique_name("listed_topic");
  txbox::test::create_topic(listed, 1);
  enqueue(topic_, 2);  // in the outbox at start
  auto r = start_relay("warn", config("durability_topics = [\"" + listed + "\"]"));
  // Not strict: the topic is weak but published.
  ASSERT_TRUE(wait_until([&] { return pending() == 0; }, 60s)) << r->output();
  EXPECT_EQ(topic_size(topic_), 2u);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0) << r->output();

  const std::string log = r->output();
  for (const auto& t : {topic_, listed}) {
    const std::string line = line_with(log, "durability: topic '" + t + "'");
    EXPECT_NE(line.find("warning"), std::string::npos) << log;
    EXPECT_NE(line.find("replication.factor=1 (needs >= 3)"), std::string::npos) << log;
    EXPECT_NE(line.find("min.insync.replicas=1 (needs >= 2)"), std::string::npos) << log;
    EXPECT_NE(line.find("kafka-reassign-partitions.sh"), std::string::npos) << log;
    // One line per topic, not one per batch or message.
    EXPECT_EQ(occurrences(log, "durability: topic '" + t + "'"), 1) << log;
  }
}

TEST_F(RelayDurabilityTest, StrictDurabilityRefusesToStartNamingTopicSettingValueAndFix) {
  enqueue(topic_, 1);
  auto r = start_relay("strict", config(), {"--strict-durability"});
  EXPECT_EQ(r->wait(60s), 5) << r->output();
  const std::string log = r->output();
  EXPECT_NE(log.find("refusing to start (strict durability): topic '" + topic_ +
                     "': replication.factor=1 (needs >= 3), min.insync.replicas=1 (needs >= 2)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("kafka-configs.sh --alter --entity-type topics --entity-name " + topic_ +
                     " --add-config min.insync.replicas=2"),
            std::string::npos)
      << log;
  EXPECT_EQ(pending(), 1);
  EXPECT_EQ(topic_size(topic_), 0u);

  // The config key, and a listed topic that does not exist: judged by the broker's defaults,
  // and the check does not make the broker auto-create it.
  schema_ = txbox::test::unique_name("rd_empty");
  txbox::test::create_schema(schema_);
  const std::string missing = txbox::test::unique_name("missing_topic");
  auto r2 = start_relay(
      "strict2", config("strict_durability = true\ndurability_topics = [\"" + missing + "\"]"));
  EXPECT_EQ(r2->wait(60s), 5) << r2->output();
  EXPECT_NE(r2->output().find("topic '" + missing +
                              "' does not exist yet and would be auto-created with: "
                              "default.replication.factor=1 (needs >= 3)"),
            std::string::npos)
      << r2->output();
  EXPECT_NE(r2->output().find("kafka-topics.sh --create --topic " + missing), std::string::npos)
      << r2->output();
  EXPECT_FALSE(txbox::test::topic_exists(missing));
}

TEST_F(RelayDurabilityTest, StrictDurabilityHoldsANewWeakTopicsRowsInTheOutbox) {
  const int port = txbox::test::free_port();
  auto r =
      start_relay("held", config(),
                  {"--strict-durability", "--http-listen", "127.0.0.1:" + std::to_string(port)});
  // The outbox is empty at start: nothing to refuse yet.
  ASSERT_TRUE(
      wait_until([&] { return r->output().find("publishing schema") != std::string::npos; }, 30s))
      << r->output();
  enqueue(topic_, 3);
  // Retried with backoff like a transient failure: attempts grow, the rows stay.
  ASSERT_TRUE(wait_until(
      [&] { return query_long("SELECT max(attempts) FROM " + schema_ + ".outbox") >= 3; }, 60s))
      << r->output();
  EXPECT_EQ(pending(), 3);
  EXPECT_EQ(query_long("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 0);
  {
    pqxx::connection c(endpoints().pg);
    const auto head =
        pq::exec1(pqxx::nontransaction(c),
                  "SELECT last_error, payload FROM " + schema_ + ".outbox ORDER BY id LIMIT 1");
    EXPECT_NE(head[0].as<std::string>().find("held by strict durability: topic '" + topic_ +
                                             "': replication.factor=1 (needs >= 3)"),
              std::string::npos)
        << head[0].as<std::string>();
  }
  EXPECT_EQ(topic_size(topic_), 0u);

  httplib::Client http("127.0.0.1", port);
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("txbox_relay_topic_weak{topic=\"" + topic_ + "\"} 1"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("txbox_relay_durability_held_total{topic=\"" + topic_ + "\"}"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("txbox_relay_failed_total 0"), std::string::npos) << metrics->body;
  // A held topic says nothing about the broker: the relay stays ready.
  const auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0) << r->output();
  const std::string log = r->output();
  const std::string line = line_with(log, "durability: topic '" + topic_ + "'");
  EXPECT_NE(line.find("error"), std::string::npos) << log;
  EXPECT_NE(line.find("stay in the outbox"), std::string::npos) << log;
  EXPECT_EQ(occurrences(log, "durability: topic '" + topic_ + "'"), 1) << log;
  EXPECT_EQ(pending(), 3);

  // Without strict durability the held rows go out, in order.
  auto relaxed = start_relay("relaxed", config());
  ASSERT_TRUE(wait_until([&] { return pending() == 0; }, 60s)) << relaxed->output();
  const auto records = txbox::test::read_topic(topic_, 3, 30s);
  ASSERT_EQ(records.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(records[i].value, std::to_string(i));
  relaxed->signal(SIGTERM);
  EXPECT_EQ(relaxed->wait(20s), 0) << relaxed->output();
}

}  // namespace
