// txbox-relay as operators run it: real processes against the real broker and database.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <fstream>
#include <pqxx/pqxx>
#include <regex>
#include <set>
#include <thread>

#include "harness.hpp"
#include "relay_support.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/outbox.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::free_port;
using txbox::test::Process;
using txbox::test::topic_size;

// Every record of `topic`, duplicates included. Call it once the outbox is drained: every
// row was acknowledged, so the high watermarks cover every message.
std::vector<txbox::test::Record> read_whole_topic(const std::string& topic) {
  const std::size_t n = topic_size(topic);
  auto records = txbox::test::read_topic(topic, n, 60s);
  EXPECT_EQ(records.size(), n) << "could not read back the whole topic " << topic;
  return records;
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("rl");
    topic_ = txbox::test::unique_name("relay_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 6);
  }

  // A TOML config for this test's schema; `extra` is appended (more keys or sections).
  std::string config(const std::string& extra = "", const std::string& url = "",
                     const std::string& kafka_extra = "") {
    const std::string path = "/tmp/" + txbox::test::unique_name("relay") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << (url.empty() ? endpoints().pg : url) << "\"\nschema = \""
      << schema_ << "\"\n[relay]\nlease_ttl_ms = " << lease_ttl_ms_ << "\npoll_interval_ms = 200\n"
      << extra << "\n[kafka]\n\"bootstrap.servers\" = \""
      << (bootstrap_.empty() ? endpoints().kafka : bootstrap_) << "\"\n"
      << kafka_extra;
    return path;
  }

  std::unique_ptr<Process> start_relay(const std::string& name, const std::string& cfg,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {txbox::test::program("txbox-relay"), "--config", cfg, "--name",
                                     name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, "/tmp/" + txbox::test::unique_name(name) + ".log");
  }

  // Enqueues `count` messages over `keys` keys; payload "key/seq"; `per_tx` per transaction.
  void enqueue(int count, int keys, int per_tx, int first_seq = 0) {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    for (int i = 0; i < count; i += per_tx) {
      std::vector<txbox::Message> batch;
      for (int j = i; j < std::min(count, i + per_tx); ++j) {
        const int seq = first_seq + j;
        const std::string key = "key-" + std::to_string(seq % keys);
        batch.push_back(
            {.topic = topic_, .key = key, .payload = key + "/" + std::to_string(seq / keys)});
      }
      pqxx::work tx(c);
      ob.enqueue(tx, batch);
      tx.commit();
    }
  }

  long pending() { return txbox::test::outbox_rows(schema_); }

  bool wait_drained(std::chrono::seconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (pending() == 0) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Every message arrived; per key, first arrivals are in order; any duplicate is an exact
  // re-send (same ce_id, same payload). Returns the number of duplicates.
  int check_stream(const std::vector<txbox::test::Record>& records, int expected) {
    std::map<std::string, std::string> payload_by_id;
    std::map<std::string, int> last_seq;
    int dups = 0;
    for (const auto& r : records) {
      const auto id = r.headers.at("ce_id");
      auto [it, fresh] = payload_by_id.emplace(id, r.value);
      if (!fresh) {
        EXPECT_EQ(it->second, r.value) << "a duplicate of " << id << " differs";
        ++dups;
        continue;
      }
      const auto slash = r.value.find('/');
      EXPECT_EQ(r.key, r.value.substr(0, slash));
      const int seq = std::stoi(r.value.substr(slash + 1));
      auto [ls, first] = last_seq.try_emplace(r.key, -1);
      EXPECT_EQ(seq, ls->second + 1) << "key " << r.key << " out of order or missing";
      ls->second = seq;
    }
    EXPECT_EQ(payload_by_id.size(), static_cast<std::size_t>(expected));
    return dups;
  }

  std::string schema_;
  std::string topic_;
  int lease_ttl_ms_ = 3000;
  std::string bootstrap_;  // Kafka for config(); empty: the test broker
};

TEST_F(RelayTest, ThreeRelaysKeepPerKeyOrderOverTenThousandMessages) {
  const auto cfg = config();
  auto a = start_relay("a", cfg);
  auto b = start_relay("b", cfg);
  auto c = start_relay("c", cfg);
  enqueue(10'000, 100, 50);
  ASSERT_TRUE(wait_drained(120s)) << a->output();
  const auto records = read_whole_topic(topic_);
  EXPECT_EQ(check_stream(records, 10'000), 0);
  // The leases spread fairly over the live relays: three owners, at most ceil(64/3) each.
  bool spread = false;
  for (int i = 0; i < 100 && !spread; ++i) {
    pqxx::connection conn(endpoints().pg);
    const auto r = pqxx::nontransaction(conn).exec1(
        "SELECT count(DISTINCT owner), coalesce(max(n), 0), coalesce(sum(n), 0) FROM (SELECT "
        "owner, count(*) AS n FROM " +
        schema_ +
        ".outbox_leases WHERE expires_at > now() "
        "GROUP BY owner) o");
    spread = r[0].as<int>() == 3 && r[1].as<int>() <= 22 && r[2].as<int>() == 64;
    if (!spread) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(spread) << "leases not spread over the three relays";
  for (auto* p : {a.get(), b.get(), c.get()}) p->signal(SIGTERM);
  for (auto* p : {a.get(), b.get(), c.get()}) EXPECT_EQ(p->wait(20s), 0) << p->output();
  // Every record carries the CloudEvents headers.
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0].headers.at("ce_specversion"), "1.0");
  EXPECT_EQ(records[0].headers.at("ce_id").size(), 36u);
}

// Relays started together share the shards from the start: a relay registers its heartbeat
// first and takes ceil(64 / live relays) one heartbeat round later, instead of grabbing all
// 64 and handing most back a round later.
TEST_F(RelayTest, ARelayStartingBesideOthersTakesOnlyItsShareFromTheStart) {
  auto a = start_relay("a", config());
  pqxx::connection conn(endpoints().pg);
  const auto count = [&](const std::string& sql) {
    return pqxx::nontransaction(conn).exec1(sql)[0].as<int>();
  };
  ASSERT_TRUE(txbox::test::wait_until(
      [&] {
        return count("SELECT count(*) FROM " + schema_ + ".outbox_relays WHERE name = 'a'") == 1;
      },
      20s))
      << a->output();
  // Two relays that came up at the same moment (their heartbeats, written here).
  {
    pqxx::work tx(conn);
    for (const char* peer : {"x", "y"}) {
      tx.exec_params("INSERT INTO " + schema_ +
                         ".outbox_relays (name, seen_at) VALUES ($1, now()) "
                         "ON CONFLICT (name) DO UPDATE SET seen_at = now()",
                     peer);
    }
    tx.commit();
  }
  const std::string owned_by_a =
      "SELECT count(*) FROM " + schema_ + ".outbox_leases WHERE owner = 'a'";
  ASSERT_TRUE(txbox::test::wait_until([&] { return count(owned_by_a) > 0; }, 20s)) << a->output();
  EXPECT_LE(count(owned_by_a), 22) << a->output();  // ceil(64 / 3)
  EXPECT_NE(a->output().find("leases: 22 of 64 shards owned (3 live relay(s))"), std::string::npos)
      << a->output();
  a->signal(SIGTERM);
  EXPECT_EQ(a->wait(20s), 0) << a->output();
}

TEST_F(RelayTest, KillNineMidStreamLosesNothingAndKeepsOrder) {
  const auto cfg = config();
  auto a = start_relay("a", cfg);
  auto b = start_relay("b", cfg);
  std::jthread writer([&] { enqueue(6'000, 50, 20); });  // joined even if a check throws
  // Mid-stream: kill once the relays have published a part of the stream, not after a fixed
  // sleep (under load the writer may not have started yet).
  for (int i = 0; i < 300 && topic_size(topic_) < 1'000; ++i) std::this_thread::sleep_for(50ms);
  a->signal(SIGKILL);
  EXPECT_EQ(a->wait(10s), 128 + SIGKILL);
  std::this_thread::sleep_for(500ms);
  auto a2 = start_relay("a2", cfg);
  writer.join();
  ASSERT_TRUE(wait_drained(120s)) << b->output();
  // A batch that was acknowledged but not yet deleted when A died is re-sent whole: read
  // every record, not the first 6,000 (which would count those duplicates as messages).
  const auto records = read_whole_topic(topic_);
  const int dups = check_stream(records, 6'000);
  std::cout << "duplicates after kill -9 (exact re-sends): " << dups << "\n";
}

// A relay paused past its lease (SIGSTOP: a GC-like stall, a frozen VM) while another relay
// takes its shards over produces nothing and deletes nothing once it runs again; the stream
// keeps every key's order.
TEST_F(RelayTest, SigstopPastTheLeaseThenSigcontPublishesAndDeletesNothingStale) {
  lease_ttl_ms_ = 6000;  // B keeps the shards >= 4 s after taking them: the window below
  const auto cfg = config();
  // A backlog keeps both relays busy claiming, producing and deleting big batches, so the
  // stop most likely lands between a claim and its acks.
  constexpr int total = 40'000;
  enqueue(total, 100, 500);
  auto a = start_relay("a", cfg);
  auto b = start_relay("b", cfg);
  ASSERT_TRUE(txbox::test::wait_until([&] { return topic_size(topic_) >= 2'000; }, 60s))
      << a->output();
  a->signal(SIGSTOP);

  // B takes every shard once A's leases expired, and keeps them all once A no longer counts
  // as a live relay (its heartbeat older than the lease ttl).
  pqxx::connection conn(endpoints().pg);
  const auto owned_by_b = [&] {
    return pqxx::nontransaction(conn)
        .exec1("SELECT count(*) FROM " + schema_ +
               ".outbox_leases WHERE owner = 'b' AND expires_at > now()")[0]
        .as<int>();
  };
  const auto a_is_live = [&] {
    return pqxx::nontransaction(conn)
               .exec1("SELECT count(*) FROM " + schema_ +
                      ".outbox_relays WHERE name = 'a' AND seen_at > now() - interval '6 s'")[0]
               .as<int>() == 1;
  };
  ASSERT_TRUE(txbox::test::wait_until([&] { return !a_is_live() && owned_by_b() == 64; }, 60s))
      << b->output();
  // B stalls too, holding valid leases: whatever A does now is visible, as nobody else may
  // publish or delete. 500 ms for the broker to finish B's last request.
  b->signal(SIGSTOP);
  std::this_thread::sleep_for(500ms);
  const auto outbox_ids = [&] {
    std::set<long> ids;
    for (const auto& row :
         pqxx::nontransaction(conn).exec("SELECT id FROM " + schema_ + ".outbox")) {
      ids.insert(row[0].as<long>());
    }
    return ids;
  };
  const auto rows_before = outbox_ids();
  const auto ends_before = txbox::test::partition_ends(topic_);

  const auto resumed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  a->signal(SIGCONT);
  // A resumes where it stopped (claim, produce, acks, delete) and then ticks its leases:
  // wait for that tick (its heartbeat was >= 6 s old), then give the broker 300 ms for
  // anything A's producer might still have sent.
  ASSERT_TRUE(txbox::test::wait_until(
      [&] {
        return pqxx::nontransaction(conn)
                   .exec1("SELECT count(*) FROM " + schema_ +
                          ".outbox_relays WHERE name = 'a' AND seen_at > now() - interval '1 s'")[0]
                   .as<int>() == 1;
      },
      3s))
      << a->output();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(outbox_ids(), rows_before) << "A deleted rows after losing its leases\n" << a->output();
  // Messages A had handed to its Kafka client before the stop may still reach the broker
  // (Kafka cannot fence a non-transactional producer); A must hand over nothing new, except
  // the one message whose hand-over the stop may have interrupted right after its check.
  const auto late =
      txbox::test::record_timestamps(topic_, ends_before, txbox::test::partition_ends(topic_));
  const auto produced_after = std::count_if(
      late.begin(), late.end(), [&](std::int64_t stamp) { return stamp >= resumed_ms; });
  EXPECT_LE(produced_after, 1) << "A produced after it resumed without its leases\n" << a->output();
  std::cout << "records that reached Kafka after A resumed: " << late.size()
            << ", produced after it resumed: " << produced_after << "\n";
  // The window was real: B's leases were still valid, so A owned nothing all along.
  ASSERT_EQ(pqxx::nontransaction(conn)
                .exec1("SELECT count(*) FROM " + schema_ +
                       ".outbox_leases WHERE owner = 'b' AND expires_at > now()")[0]
                .as<int>(),
            64)
      << "B's leases expired during the check: the machine is too slow for this window";
  EXPECT_TRUE(a->running());

  b->signal(SIGCONT);
  ASSERT_TRUE(wait_drained(120s)) << a->output() << b->output();
  const auto records = read_whole_topic(topic_);
  const int dups = check_stream(records, total);
  std::cout << "duplicates after SIGSTOP/SIGCONT (exact re-sends): " << dups << "\n";
  for (auto* p : {a.get(), b.get()}) p->signal(SIGTERM);
  for (auto* p : {a.get(), b.get()}) EXPECT_EQ(p->wait(20s), 0) << p->output();
}

// Kafka cannot take the rows yet (their topic does not exist and the relay may not have it
// auto-created): they stay in the outbox and are retried, with Kafka's error as last_error
// and in one log line (never a payload), and arrive in order once the topic exists.
TEST_F(RelayTest, RowsKafkaCannotTakeStayUntilAcknowledgedThenArriveInOrder) {
  topic_ = txbox::test::unique_name("later_topic");
  enqueue(20, 2, 20);  // payloads "key-0/0", "key-1/0", ...
  auto r = start_relay("later", config("", "", "\"allow.auto.create.topics\" = false\n"));
  pqxx::connection conn(endpoints().pg);
  const auto query_long = [&](const std::string& sql) {
    return pqxx::nontransaction(conn).exec1(sql)[0].as<long>();
  };
  ASSERT_TRUE(txbox::test::wait_until(
      [&] {
        return query_long("SELECT coalesce(max(attempts), -1) FROM " + schema_ + ".outbox") >= 2;
      },
      60s))
      << r->output();
  EXPECT_EQ(pending(), 20);
  EXPECT_EQ(query_long("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 0);
  EXPECT_FALSE(txbox::test::topic_exists(topic_));
  const auto errors = pqxx::nontransaction(conn).exec("SELECT DISTINCT last_error FROM " + schema_ +
                                                      ".outbox WHERE last_error IS NOT NULL");
  ASSERT_FALSE(errors.empty());
  for (const auto& e : errors) {
    EXPECT_EQ(e[0].as<std::string>().find("key-"), std::string::npos)
        << "a payload as the error: " << e[0].as<std::string>();
  }

  txbox::test::create_topic(topic_, 2);
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  check_stream(read_whole_topic(topic_), 20);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0) << r->output();
  const std::string log = r->output();
  EXPECT_EQ(txbox::test::occurrences(log, "kafka: deliveries failing"), 1) << log;
  EXPECT_NE(log.find("kafka: deliveries succeed again"), std::string::npos) << log;
  EXPECT_EQ(log.find("key-"), std::string::npos) << "a payload in the log\n" << log;
  EXPECT_EQ(log.find("database: unreachable"), std::string::npos) << log;
}

// The idempotent producer raises a fatal error (here: the broker answers a ProduceRequest
// with OUT_OF_ORDER_SEQUENCE_NUMBER, which librdkafka cannot reconcile). The relay replaces
// the producer; the unacknowledged rows go out again from each shard's head: nothing lost,
// every key in order. Against librdkafka's mock cluster, which can script that answer.
TEST_F(RelayTest, FatalProducerErrorReplacesTheProducerAndLosesNothing) {
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  txbox::detail::kafka_ptr owner(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  ASSERT_TRUE(owner) << err;
  conf.release();  // rd_kafka_new took the conf on success
  // Destroyed (at the end of the test) before its owner.
  std::unique_ptr<rd_kafka_mock_cluster_t, decltype(&rd_kafka_mock_cluster_destroy)> mock(
      rd_kafka_mock_cluster_new(owner.get(), 1), &rd_kafka_mock_cluster_destroy);
  ASSERT_TRUE(mock);
  ASSERT_EQ(rd_kafka_mock_topic_create(mock.get(), topic_.c_str(), 2, 1),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  bootstrap_ = rd_kafka_mock_cluster_bootstraps(mock.get());

  auto r = start_relay("fatal", config());
  enqueue(200, 10, 50);
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  constexpr std::int16_t produce_api = 0;  // ApiKey of ProduceRequest
  rd_kafka_mock_push_request_errors(mock.get(), produce_api, 1,
                                    RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  enqueue(200, 10, 50, 200);
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  std::size_t total = 0;  // duplicates included
  for (const auto& [p, end] : txbox::test::partition_ends(topic_, bootstrap_)) {
    total += static_cast<std::size_t>(end);
  }
  const auto records = txbox::test::read_records(bootstrap_, topic_, total, 30s);
  ASSERT_EQ(records.size(), total);
  check_stream(records, 400);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0) << r->output();
  const std::string log = r->output();
  EXPECT_EQ(txbox::test::occurrences(log, "kafka: the producer hit a fatal error"), 1) << log;
}

TEST_F(RelayTest, OversizeMessageGoesToDeadLettersAndTheShardGoesOn) {
  {
    pqxx::connection c(endpoints().pg);
    pqxx::work tx(c);
    // Written with plain SQL: txbox::outbox itself would refuse it.
    tx.exec_params(
        "INSERT INTO " + schema_ +
            ".outbox (message_id, topic, key, payload) "
            "VALUES (gen_random_uuid(), $1, 'K', convert_to(repeat('x', 2000000), 'UTF8'))",
        topic_);
    tx.commit();
  }
  enqueue(1, 1, 1);  // key-0, same shard or not: it must arrive
  {
    pqxx::connection c(endpoints().pg);
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO " + schema_ +
                       ".outbox (message_id, topic, key, payload) "
                       "VALUES (gen_random_uuid(), $1, 'K', 'after')",
                   topic_);
    tx.commit();
  }
  auto r = start_relay("a", config());
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction n(c);
  const auto dead = n.exec("SELECT key, error, attempts FROM " + schema_ + ".outbox_dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0][0].as<std::string>(), "K");
  EXPECT_NE(dead[0][1].as<std::string>().find("too large"), std::string::npos)
      << dead[0][1].as<std::string>();
  const auto records = txbox::test::read_topic(topic_, 2, 30s);
  ASSERT_EQ(records.size(), 2u);
  std::set<std::string> values;
  for (const auto& rec : records) values.insert(rec.value);
  EXPECT_TRUE(values.contains("after"));
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0);
}

TEST_F(RelayTest, WeakAcksAreRefusedWithTheReason) {
  for (const std::string acks : {"0", "1"}) {
    const std::string path = config();
    std::ofstream(path, std::ios::app) << "acks = \"" << acks << "\"\n";
    auto weak = start_relay("weak", path);
    EXPECT_EQ(weak->wait(20s), 3) << weak->output();
    EXPECT_NE(weak->output().find("acks = " + acks + " is refused"), std::string::npos)
        << weak->output();
  }
  const std::string path = config();
  std::ofstream(path, std::ios::app) << "\"enable.idempotence\" = false\n";
  auto r = start_relay("noidem", path);
  EXPECT_EQ(r->wait(20s), 3);
  EXPECT_NE(r->output().find("enable.idempotence = false is refused"), std::string::npos)
      << r->output();
  // A librdkafka message timeout longer than the lease would let a stalled relay publish late.
  auto t = start_relay("timeout", config("", "", "\"message.timeout.ms\" = 300000\n"));
  EXPECT_EQ(t->wait(20s), 3);
  EXPECT_NE(t->output().find("kafka.message.timeout.ms is managed by txbox-relay"),
            std::string::npos)
      << t->output();
}

TEST_F(RelayTest, UnmigratedOrOlderSchemaExitsNamingTheMigration) {
  const std::string path = config();
  auto r = start_relay("x", path, {"--schema", "no_such_schema"});
  EXPECT_EQ(r->wait(20s), 4) << r->output();
  EXPECT_NE(r->output().find("V1__create_txbox_schema.sql"), std::string::npos) << r->output();

  // A schema with only V1 applied.
  const std::string old = txbox::test::unique_name("old");
  std::string out;
  ASSERT_EQ(txbox::test::run_command("'" + txbox::test::source_dir() + "/migrations/render.sh' " +
                                         old + " --out /tmp/" + old +
                                         " && psql -q -v ON_ERROR_STOP=1 '" + endpoints().pg +
                                         "' -f /tmp/" + old + "/V1__create_txbox_schema.sql",
                                     &out),
            0)
      << out;
  auto r2 = start_relay("y", path, {"--schema", old});
  EXPECT_EQ(r2->wait(20s), 4) << r2->output();
  EXPECT_NE(r2->output().find("at version 1, txbox-relay needs 2"), std::string::npos)
      << r2->output();
  EXPECT_NE(r2->output().find("migrations/V2__"), std::string::npos) << r2->output();
}

TEST_F(RelayTest, MalformedOrUnknownConfigIsAClearError) {
  const std::string bad = "/tmp/" + txbox::test::unique_name("bad") + ".toml";
  std::ofstream(bad) << "[database\nurl = 1\n";
  auto r = start_relay("x", bad);
  EXPECT_EQ(r->wait(20s), 3);
  EXPECT_NE(r->output().find("cannot read config file"), std::string::npos) << r->output();
  auto r2 = start_relay("x", config("batchsize = 5"));
  EXPECT_EQ(r2->wait(20s), 3);
  EXPECT_NE(r2->output().find("unknown config key 'relay.batchsize'"), std::string::npos)
      << r2->output();
  auto r3 = start_relay("x", config("batch_size = -5"));
  EXPECT_EQ(r3->wait(20s), 3);
  EXPECT_NE(r3->output().find("relay.batch_size"), std::string::npos) << r3->output();
  auto r4 = start_relay("x", config("max_batch_bytes = 1000"));
  EXPECT_EQ(r4->wait(20s), 3);
  EXPECT_NE(r4->output().find("relay.max_batch_bytes"), std::string::npos) << r4->output();
}

// Rounds are cut to relay.max_batch_bytes (here the minimum, 1 MiB, against 12 MB of
// messages on few keys): several rounds, nothing lost, every key in order.
TEST_F(RelayTest, RoundsCutToMaxBatchBytesKeepEveryKeyInOrder) {
  {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    std::vector<txbox::Message> batch;
    for (int seq = 0; seq < 120; ++seq) {
      const std::string key = "key-" + std::to_string(seq % 3);
      std::string payload = key + "/" + std::to_string(seq / 3) + "|";
      payload.resize(100'000, 'p');
      batch.push_back({.topic = topic_, .key = key, .payload = payload});
    }
    ob.enqueue(tx, batch);
    tx.commit();
  }
  auto r = start_relay("bytes", config("max_batch_bytes = 1048576"));
  ASSERT_TRUE(wait_drained(120s)) << r->output();
  EXPECT_EQ(check_stream(read_whole_topic(topic_), 120), 0);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(20s), 0) << r->output();
}

TEST_F(RelayTest, SigtermStopsCleanlyAndReleasesLeases) {
  auto r = start_relay("term", config());
  enqueue(500, 10, 50);
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(15s), 0) << r->output();
  EXPECT_NE(r->output().find("released"), std::string::npos) << r->output();
  pqxx::connection c(endpoints().pg);
  EXPECT_EQ(pqxx::nontransaction(c)
                .exec1("SELECT count(*) FROM " + schema_ + ".outbox_leases WHERE owner = 'term'")[0]
                .as<int>(),
            0);
}

// The backlog gauge must not scan a large outbox every second: exact up to 100,000 rows,
// PostgreSQL's estimate above. No broker answers, so the rows stay put.
TEST_F(RelayTest, BacklogGaugeIsExactUpToAHundredThousandRowsThenAnEstimate) {
  {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction n(c);
    n.exec_params("INSERT INTO " + schema_ +
                      ".outbox (message_id, topic, key, payload, headers) "
                      "SELECT gen_random_uuid(), $1, 'k' || (i % 100), '\\x00'::bytea, "
                      "'[]'::jsonb FROM generate_series(1, 150000) i",
                  topic_);
    // The statistics say 1,000,000 rows (and autovacuum may not correct them): an exact
    // count would give 150,000.
    n.exec("ALTER TABLE " + schema_ + ".outbox SET (autovacuum_enabled = false)");
    std::string admin = endpoints().pg_admin;
    admin.replace(admin.find("dbname=postgres"), 15, "dbname=txbox");
    pqxx::connection su(admin);
    pqxx::nontransaction(su).exec_params(
        "UPDATE pg_class SET reltuples = 1000000 WHERE oid = to_regclass($1)", schema_ + ".outbox");
  }
  bootstrap_ = "127.0.0.1:" + std::to_string(free_port());
  const int port = free_port();
  auto r = start_relay("g", config(), {"--http-listen", "127.0.0.1:" + std::to_string(port)});
  httplib::Client http("127.0.0.1", port);
  long gauge = -1;
  const std::regex line(R"(txbox_outbox_backlog_rows ([0-9]+))");
  ASSERT_TRUE(txbox::test::wait_until(
      [&] {
        const auto m = http.Get("/metrics");
        std::smatch match;
        if (!m || !std::regex_search(m->body, match, line)) return false;
        gauge = std::stol(match[1]);
        return gauge > 0;
      },
      30s))
      << r->output();
  EXPECT_EQ(gauge, 1'000'000);
  EXPECT_EQ(pending(), 150'000);
  r->signal(SIGTERM);
  r->wait(20s);
}

TEST_F(RelayTest, MetricsParseAsPrometheusTextAndReadyzAnswers) {
  const int port = free_port();
  auto r = start_relay("m", config(), {"--http-listen", "127.0.0.1:" + std::to_string(port)});
  enqueue(200, 10, 50);
  ASSERT_TRUE(wait_drained(60s)) << r->output();
  httplib::Client http("127.0.0.1", port);
  int ready_status = 0;
  for (int i = 0; i < 50 && ready_status == 0; ++i) {
    if (auto res = http.Get("/readyz")) {
      ready_status = res->status;
    } else {
      std::this_thread::sleep_for(100ms);
    }
  }
  EXPECT_EQ(ready_status, 200);
  std::this_thread::sleep_for(1200ms);  // backlog gauge refreshes every second
  const auto m = http.Get("/metrics");
  ASSERT_TRUE(m);
  const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_]+="[^"]*"\})? [-+0-9.eInf]+$)");
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::istringstream lines(m->body);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, sample) || std::regex_match(line, comment)) << line;
    samples += line[0] != '#';
  }
  EXPECT_GT(samples, 20);
  EXPECT_NE(m->body.find("txbox_relay_published_total{topic=\"" + topic_ + "\"} 200"),
            std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("txbox_outbox_backlog_rows 0"), std::string::npos);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(15s), 0);
}

TEST_F(RelayTest, NoPasswordInAnyLogLine) {
  const std::string secret = "Pa55-w0rd-never-logged";
  // URI with a password (the test server trusts; the password is still sent), a Kafka secret,
  // and then an unreachable database so the error path logs too.
  const auto& pg = endpoints().pg;
  const std::string port = std::regex_replace(pg, std::regex(".*port=([0-9]+).*"), "$1");
  const std::string url = "postgresql://txbox_owner:" + secret + "@127.0.0.1:" + port + "/txbox";
  const std::string extra = "\"sasl.password\" = \"" + secret + "\"\n";
  auto check = start_relay("s", config("", url, extra), {"--check-config"});
  EXPECT_EQ(check->wait(20s), 0) << check->output();
  auto ok = start_relay("s", config("", url, extra), {"--log-level", "debug"});
  std::this_thread::sleep_for(2s);
  ok->signal(SIGTERM);
  ok->wait(15s);
  const std::string down = "postgresql://txbox_owner:" + secret + "@127.0.0.1:1/txbox";
  auto unreachable = start_relay("s", config("", down, extra));
  std::this_thread::sleep_for(1500ms);
  unreachable->signal(SIGTERM);
  unreachable->wait(15s);
  for (auto* p : {check.get(), ok.get(), unreachable.get()}) {
    EXPECT_EQ(p->output().find(secret), std::string::npos) << p->output();
  }
  EXPECT_NE(check->output().find("***"), std::string::npos) << check->output();
  EXPECT_NE(unreachable->output().find("cannot connect to the database"), std::string::npos)
      << unreachable->output();
}

}  // namespace
