// txbox-relay as operators run it: configuration refused with the reason, schema checks,
// round sizes, shutdown, the backlog gauge, metrics and /readyz, and logs without secrets.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <pqxx/pqxx>
#include <regex>
#include <thread>

#include "relay_fixture.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::free_port;
using txbox::test::Process;
using txbox::test::read_whole_topic;
using txbox::test::RelayTest;

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
  EXPECT_NE(r2->output().find("at version 1, txbox-relay needs 6"), std::string::npos)
      << r2->output();
  EXPECT_NE(r2->output().find("migrations/V2__"), std::string::npos) << r2->output();

  // A V5 schema (the NOTIFY trigger, no probe grant): this relay refuses and names V6.
  ASSERT_EQ(txbox::test::run_command("cd /tmp/" + old + " && for f in V2 V3 V4 V5; do psql -q -v " +
                                         "ON_ERROR_STOP=1 '" + endpoints().pg +
                                         "' -f ${f}__*.sql " + "|| exit 1; done",
                                     &out),
            0)
      << out;
  auto r3 = start_relay("z", path, {"--schema", old});
  EXPECT_EQ(r3->wait(20s), 4) << r3->output();
  EXPECT_NE(r3->output().find("at version 5, txbox-relay needs 6"), std::string::npos)
      << r3->output();
  EXPECT_NE(r3->output().find("migrations/V6__"), std::string::npos) << r3->output();
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
  EXPECT_EQ(pq::exec1(pqxx::nontransaction(c),
                      "SELECT count(*) FROM " + schema_ + ".outbox_leases WHERE owner = 'term'")[0]
                .as<int>(),
            0);
}

// The backlog gauge must not scan a large outbox every second: exact up to 100,000 rows,
// PostgreSQL's estimate above. No broker answers, so the rows stay put.
TEST_F(RelayTest, BacklogGaugeIsExactUpToAHundredThousandRowsThenAnEstimate) {
  {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction n(c);
    pq::exec(n,
             "INSERT INTO " + schema_ +
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
    pq::exec(pqxx::nontransaction(su),
             "UPDATE pg_class SET reltuples = 1000000 WHERE oid = to_regclass($1)",
             schema_ + ".outbox");
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
