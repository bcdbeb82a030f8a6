// txbox::inbox through outages: the database gone mid-stream, the consumer killed twenty
// times, partitions moving between consumers while a handler outlives max.poll.interval.ms.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "inbox_fixture.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::test {

void InboxTest::moving_partitions_with_a_slow_handler(const std::string& strategy) {
  constexpr int total = 1200;
  produce(topic_, numbered(total, 4));
  auto cfg = config();
  cfg.max_batch = 20;
  cfg.kafka["max.poll.interval.ms"] = "3000";
  cfg.kafka["session.timeout.ms"] = "3000";
  cfg.kafka["partition.assignment.strategy"] = strategy;
  const std::string table = schema_ + ".effects";
  std::atomic<bool> stalled = false;
  auto handler = [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    pq::exec(tx,
             "INSERT INTO " + table +
                 " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
             m.id, m.topic, m.partition, m.offset);
    if (m.offset == 50 && !stalled.exchange(true)) std::this_thread::sleep_for(5s);
    std::this_thread::sleep_for(1ms);
  };
  std::atomic<bool> stop = false;
  auto worker = [&](std::chrono::seconds life) {
    txbox::Consumer c(cfg, handler);
    const auto until = std::chrono::steady_clock::now() + life;
    while (!stop && std::chrono::steady_clock::now() < until) c.poll_once(100ms);
  };
  std::jthread a(worker, 40s);
  std::this_thread::sleep_for(1500ms);
  std::jthread b(worker, 40s);
  std::this_thread::sleep_for(2000ms);
  { std::jthread c(worker, 3s); }  // joins and leaves: two more rebalances
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (distinct_effects() < total && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(200ms);
  }
  stop = true;
  a.join();
  b.join();
  EXPECT_TRUE(stalled);
  EXPECT_EQ(distinct_effects(), total);
  EXPECT_EQ(effects(), total) << "a message took effect twice";
}

}  // namespace txbox::test

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::InboxTest;
using txbox::test::numbered;
using txbox::test::Out;
using txbox::test::produce;

TEST_F(InboxTest, DatabaseOutagePausesAndResumesWithoutLossOrDuplicate) {
  // A database of its own, so that refusing connections disturbs no other test.
  const std::string db = txbox::test::unique_name("outage");
  pqxx::connection admin(endpoints().pg_admin);
  pq::exec0(pqxx::nontransaction(admin), "CREATE DATABASE " + db + " OWNER txbox_owner");
  const std::string url = endpoints().pg + " dbname=" + db;
  std::string out;
  ASSERT_EQ(txbox::test::run_command("cd '" + txbox::test::source_dir() +
                                         "' && for f in migrations/V*__*.sql; do psql -X -q -v "
                                         "ON_ERROR_STOP=1 '" +
                                         url + "' -f $f || exit 1; done",
                                     &out),
            0)
      << out;
  {
    pqxx::connection c(url);
    pq::exec0(
        pqxx::nontransaction(c),
        "CREATE TABLE effects (message_id text, topic text, \"partition\" int, \"offset\" bigint)");
  }
  constexpr int total = 3000;
  produce(topic_, numbered(total, 4));
  auto cfg = config();
  cfg.database_url = url;
  cfg.schema = "txbox";
  cfg.max_batch = 50;
  cfg.retry_backoff_max = 500ms;
  std::atomic<bool> was_unready = false;
  std::jthread worker([&](std::stop_token stop) {
    txbox::Consumer c(cfg, [](pqxx::work& tx, const txbox::ReceivedMessage& m) {
      pq::exec(tx,
               "INSERT INTO effects (message_id, topic, \"partition\", \"offset\") "
               "VALUES ($1, $2, $3, $4)",
               m.id, m.topic, m.partition, m.offset);
      std::this_thread::sleep_for(500us);
    });
    while (!stop.stop_requested()) {
      c.poll_once(100ms);
      if (!c.stats().ready) was_unready = true;
    }
  });
  auto count = [&](const std::string& what) {
    pqxx::connection c(url);
    return pqxx::nontransaction(c)
        .exec("SELECT " + what + " FROM effects")[0][0]
        .as<std::int64_t>();
  };
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (count("count(*)") < 300 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  {
    pqxx::nontransaction n(admin);
    pq::exec0(n, "ALTER DATABASE " + db + " ALLOW_CONNECTIONS false");
    n.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + db + "'");
  }
  std::this_thread::sleep_for(3s);
  pq::exec0(pqxx::nontransaction(admin), "ALTER DATABASE " + db + " ALLOW_CONNECTIONS true");
  const auto done_by = std::chrono::steady_clock::now() + 90s;
  while (count("count(DISTINCT message_id)") < total &&
         std::chrono::steady_clock::now() < done_by) {
    std::this_thread::sleep_for(200ms);
  }
  worker.request_stop();
  worker.join();
  EXPECT_TRUE(was_unready) << "the outage was not noticed";
  EXPECT_EQ(count("count(DISTINCT message_id)"), total);
  EXPECT_EQ(count("count(*)"), total) << "a message took effect twice";
  pq::exec0(pqxx::nontransaction(admin), "DROP DATABASE " + db + " WITH (FORCE)");
}

// D1: a consumer killed at any instant, 20 times over one stream, then restarted.
TEST_F(InboxTest, KillNineTwentyTimesGivesOneEffectPerMessage) {
  constexpr int total = 4000;
  auto records = numbered(total, 4);
  for (int i = 0; i < total; i += 10) records[static_cast<std::size_t>(i)].id.clear();  // no ce_id
  // A producer's duplicates: 200 ids sent a second time, to another partition, later.
  for (int i = 1; i < total; i += 20) {
    records.push_back({"m" + std::to_string(i), "again", (i + 1) % 4});
  }
  const auto produced = static_cast<std::int64_t>(records.size());
  produce(topic_, records);
  const std::string name = "killed_" + schema_;
  const std::vector<std::string> argv = {TXBOX_TEST_CONSUMER,
                                         "consumer.name=" + name,
                                         "consumer.topics=" + topic_,
                                         "consumer.max_batch=50",
                                         "database.url=" + endpoints().pg,
                                         "database.schema=" + schema_,
                                         "kafka.bootstrap.servers=" + endpoints().kafka,
                                         "kafka.session.timeout.ms=6000"};
  setenv("TXBOX_TEST_HANDLER_SLEEP_US", "200", 1);
  std::mt19937 rng(7);
  std::int64_t before = 0;
  int kills = 0;
  while (kills < 20) {
    txbox::test::Process p(argv, "/tmp/" + name + ".log");
    std::this_thread::sleep_for(std::chrono::milliseconds(700 + rng() % 900));
    p.signal(SIGKILL);
    p.wait(10s);
    ++kills;
    const auto now = effects();
    if (now >= total) break;
    before = now;
  }
  // The last run finishes the stream.
  {
    txbox::test::Process p(argv, "/tmp/" + name + ".log");
    const auto until = std::chrono::steady_clock::now() + 120s;
    while (distinct_effects() < total && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(200ms);
    }
    p.signal(SIGTERM);
    EXPECT_EQ(p.wait(30s), 0) << p.output();
  }
  unsetenv("TXBOX_TEST_HANDLER_SLEEP_US");
  EXPECT_GE(kills, 10) << "the stream ended before the kills: make it longer";
  EXPECT_GT(before, 0) << "no progress between kills";
  EXPECT_EQ(distinct_effects(), total);
  EXPECT_EQ(effects(), total) << "a message took effect twice";
  EXPECT_EQ(scalar("SELECT sum(next_offset) FROM " + schema_ + ".inbox_offsets"), produced);
}

TEST_F(InboxTest, SlowHandlerAndMovingPartitionsCooperative) {
  moving_partitions_with_a_slow_handler("cooperative-sticky");
}

TEST_F(InboxTest, SlowHandlerAndMovingPartitionsEager) {
  moving_partitions_with_a_slow_handler("range");
}

}  // namespace
