// txboxctl against a real PostgreSQL: the built binary, run as an operator runs it. Status,
// schema check, errors and secrets here; the dead-letter commands in txboxctl_dead_pgtest.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>

#include "harness.hpp"
#include "txbox/outbox.hpp"
#include "txbox/uuid.hpp"

#include "txbox/detail/pq.hpp"
#include "txboxctl_fixture.hpp"

namespace pq = txbox::pq;

namespace {

using namespace txbox::test::ctl;

// ---------------------------------------------------------------- status

TEST_F(Txboxctl, StatusOfAnEmptySchema) {
  json j;
  ASSERT_EQ(run_json("status", &j), 0);
  EXPECT_EQ(j["schema"], schema_);
  EXPECT_EQ(j["schema_version"], 7);
  EXPECT_EQ(j["outbox"]["pending"], 0);
  EXPECT_TRUE(j["outbox"]["oldest_pending_age_s"].is_null());
  EXPECT_TRUE(j["outbox"]["shards"].empty());
  EXPECT_EQ(j["leases"]["held_shards"], 0);
  EXPECT_EQ(j["leases"]["unowned_shards"].size(), 64u);
  EXPECT_TRUE(j["leases"]["owners"].empty());
  EXPECT_EQ(j["relays"]["live"], 0);
  EXPECT_EQ(j["dead"]["outbox"], 0);
  EXPECT_EQ(j["dead"]["inbox"], 0);
  EXPECT_TRUE(j["inbox_offsets"].empty());

  std::string out;
  ASSERT_EQ(run("status", &out), 0) << out;
  EXPECT_NE(out.find("Outbox backlog: empty"), std::string::npos) << out;
  EXPECT_NE(out.find("Dead letters: outbox 0, inbox 0"), std::string::npos) << out;
}

TEST_F(Txboxctl, StatusCountsBacklogLeasesRelaysDeadLettersAndOffsets) {
  const txbox::Outbox outbox({.schema = schema_});
  {
    pqxx::work tx(*conn_);
    for (int i = 0; i < 3; ++i) outbox.enqueue(tx, {.topic = "orders", .key = "alpha"});
    for (int i = 0; i < 2; ++i) outbox.enqueue(tx, {.topic = "orders", .key = "beta"});
    outbox.enqueue(tx, {.topic = "orders"});
    tx.exec("UPDATE " + schema_ +
            ".outbox_leases SET owner = 'relay-x', epoch = 1, expires_at = now() + "
            "interval '1 minute' WHERE shard = hashtext('alpha') & 63");
    tx.exec("UPDATE " + schema_ +
            ".outbox_leases SET owner = 'relay-gone', epoch = 1, expires_at = now() - "
            "interval '1 minute' WHERE shard = (hashtext('alpha') & 63) # 1");
    tx.exec("INSERT INTO " + schema_ +
            ".outbox_relays (name, seen_at) VALUES ('relay-x', now()), "
            "('relay-gone', now() - interval '1 hour')");
    tx.exec("INSERT INTO " + schema_ +
            ".inbox_offsets (consumer, topic, \"partition\", next_offset) VALUES "
            "('projector', 'orders', 0, 42), ('projector', 'orders', 1, 7)");
    tx.commit();
  }
  add_outbox_dead(txbox::uuid_v7().str(), "orders", "alpha", "x");
  add_outbox_dead(txbox::uuid_v7().str(), "payments", std::nullopt, "y");
  const long requeued = add_inbox_dead("projector", "m1", 1);
  add_inbox_dead("projector", "m2", 2);
  add_inbox_dead("audit", "m3", 3);
  pqxx::nontransaction(*conn_).exec(
      "UPDATE " + schema_ +
      ".inbox_dead SET requeued_at = now() WHERE id = " + std::to_string(requeued));
  const int alpha = static_cast<int>(count("SELECT hashtext('alpha') & 63"));
  const long shards = count("SELECT count(DISTINCT shard) FROM " + schema_ + ".outbox");

  json j;
  ASSERT_EQ(run_json("status", &j), 0);
  EXPECT_EQ(j["outbox"]["pending"], 6);
  EXPECT_GE(j["outbox"]["oldest_pending_age_s"].get<double>(), 0.0);
  ASSERT_EQ(j["outbox"]["shards"].size(), static_cast<std::size_t>(shards));
  long sum = 0;
  bool saw_alpha = false;
  for (const auto& s : j["outbox"]["shards"]) {
    sum += s["pending"].get<long>();
    if (s["shard"] == alpha) {
      saw_alpha = true;
      EXPECT_GE(s["pending"].get<long>(), 3);
      EXPECT_EQ(s["owner"], "relay-x");
    }
  }
  EXPECT_EQ(sum, 6);
  EXPECT_TRUE(saw_alpha);

  EXPECT_EQ(j["leases"]["held_shards"], 1);
  EXPECT_EQ(j["leases"]["unowned_shards"].size(), 62u);
  std::map<std::string, json> owners;
  for (const auto& o : j["leases"]["owners"]) owners[o["owner"].get<std::string>()] = o;
  ASSERT_EQ(owners.size(), 2u);
  EXPECT_EQ(owners["relay-x"]["state"], "held");
  EXPECT_EQ(owners["relay-x"]["shards"], json::array({alpha}));
  EXPECT_GT(owners["relay-x"]["expires_in_s_min"].get<double>(), 30.0);
  EXPECT_EQ(owners["relay-gone"]["state"], "expired");

  EXPECT_EQ(j["relays"]["live"], 1);
  ASSERT_EQ(j["relays"]["rows"].size(), 2u);

  EXPECT_EQ(j["dead"]["outbox"], 2);
  ASSERT_EQ(j["dead"]["outbox_by_topic"].size(), 2u);
  EXPECT_EQ(j["dead"]["outbox_by_topic"][0]["topic"], "orders");
  EXPECT_EQ(j["dead"]["inbox"], 3);
  ASSERT_EQ(j["dead"]["inbox_by_consumer"].size(), 2u);
  EXPECT_EQ(j["dead"]["inbox_by_consumer"][1]["consumer"], "projector");
  EXPECT_EQ(j["dead"]["inbox_by_consumer"][1]["count"], 2);
  EXPECT_EQ(j["dead"]["inbox_by_consumer"][1]["requeued"], 1);

  ASSERT_EQ(j["inbox_offsets"].size(), 2u);
  EXPECT_EQ(j["inbox_offsets"][0]["consumer"], "projector");
  EXPECT_EQ(j["inbox_offsets"][0]["next_offset"], 42);
  EXPECT_EQ(j["inbox_offsets"][1]["partition"], 1);

  std::string out;
  ASSERT_EQ(run("status", &out), 0) << out;
  EXPECT_NE(out.find("Outbox backlog: 6 pending"), std::string::npos) << out;
  EXPECT_NE(out.find("relay-x"), std::string::npos) << out;
  EXPECT_NE(out.find("relay-gone"), std::string::npos) << out;
  EXPECT_NE(out.find("Relays: 1 live"), std::string::npos) << out;
}

// ---------------------------------------------------------------- schema check

TEST_F(Txboxctl, SchemaCheckOnACurrentSchemaSaysUpToDate) {
  std::string out;
  EXPECT_EQ(run("schema check", &out), 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;
  json j;
  EXPECT_EQ(run_json("schema check", &j), 0);
  EXPECT_EQ(j["version"], 7);
  EXPECT_EQ(j["latest"], 7);
  EXPECT_EQ(j["up_to_date"], true);
  EXPECT_TRUE(j["missing"].empty());
}

TEST(TxboxctlSchema, UnmigratedSchemaNamesEveryMigrationFile) {
  const std::string schema = txbox::test::unique_name("nothing");
  std::string out;
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " schema check", &out), 4) << out;
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V1__create_txbox_schema.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/render.sh " + schema), std::string::npos) << out;

  // The files txboxctl knows are exactly the ones in migrations/.
  json j;
  EXPECT_EQ(ctl_json(endpoints().pg, "--schema " + schema + " schema check", &j), 4);
  EXPECT_EQ(j["schema_exists"], false);
  std::set<std::string> named, on_disk;
  for (const auto& m : j["missing"]) named.insert(m["file"].get<std::string>());
  for (const auto& f :
       std::filesystem::directory_iterator(txbox::test::source_dir() + "/migrations")) {
    if (f.path().extension() == ".sql")
      on_disk.insert("migrations/" + f.path().filename().string());
  }
  EXPECT_EQ(named, on_disk);

  // Every command refuses an unmigrated schema with exit code 4.
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " status", &out), 4) << out;
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " outbox dead list", &out), 4) << out;

  // A schema that exists but holds no txbox table.
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction(c).exec("CREATE SCHEMA " + schema);
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " schema check", &out), 4) << out;
  EXPECT_NE(out.find("no txbox tables"), std::string::npos) << out;
}

TEST(TxboxctlSchema, V1OnlySchemaNamesTheMissingFiles) {
  const std::string schema = txbox::test::unique_name("v1only");
  const std::string dir = "/tmp/" + schema;
  std::string out;
  ASSERT_EQ(
      run_command(quote(txbox::test::source_dir() + "/migrations/render.sh") + " " + schema +
                      " --out " + dir + " && psql -q -v ON_ERROR_STOP=1 " + quote(endpoints().pg) +
                      " -f " + dir + "/V1__create_txbox_schema.sql && rm -r " + dir,
                  &out),
      0)
      << out;

  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " schema check", &out), 4) << out;
  EXPECT_NE(out.find("migrations/V2__relay_members_and_notify.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V3__inbox_requeue.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V4__sql_enqueue.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V5__outbox_identity.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V6__relay_probe_wakeup.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("migrations/V7__sql_enqueue_fast_path.sql"), std::string::npos) << out;
  EXPECT_NE(out.find("version 1"), std::string::npos) << out;
  EXPECT_EQ(out.find("migrations/V1__"), std::string::npos) << out;

  json j;
  EXPECT_EQ(ctl_json(endpoints().pg, "--schema " + schema + " schema check", &j), 4);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["up_to_date"], false);
  ASSERT_EQ(j["missing"].size(), 6u);
  EXPECT_EQ(j["missing"][0]["file"], "migrations/V2__relay_members_and_notify.sql");
  EXPECT_EQ(j["missing"][2]["file"], "migrations/V4__sql_enqueue.sql");
  EXPECT_EQ(j["missing"][3]["file"], "migrations/V5__outbox_identity.sql");
  EXPECT_EQ(j["missing"][4]["file"], "migrations/V6__relay_probe_wakeup.sql");
  EXPECT_EQ(j["missing"][5]["file"], "migrations/V7__sql_enqueue_fast_path.sql");

  // --require 1 is satisfied; status needs V2; outbox dead letters work on V1.
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " schema check --require 1", &out), 0)
      << out;
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " status", &out), 4) << out;
  EXPECT_NE(out.find("V2__relay_members_and_notify.sql"), std::string::npos) << out;
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " outbox dead list", &out), 0) << out;
  // A version this build does not know is a usage error.
  EXPECT_EQ(ctl(endpoints().pg, "--schema " + schema + " schema check --require 9", &out), 3)
      << out;
}

// ---------------------------------------------------------------- errors and secrets

TEST(TxboxctlErrors, APasswordIsNeverPrinted) {
  const std::string secret = "S3cretPw-do-not-print";
  std::string out;
  // Unreachable (nothing listens on port 1): exit 2, the conninfo shown redacted.
  EXPECT_EQ(ctl("postgresql://txbox_owner:" + secret + "@127.0.0.1:1/txbox", "status", &out), 2)
      << out;
  EXPECT_EQ(out.find(secret), std::string::npos) << out;
  EXPECT_NE(out.find("postgresql://txbox_owner:***@127.0.0.1:1/txbox"), std::string::npos) << out;
  EXPECT_EQ(ctl("host=127.0.0.1 port=1 user=x password=" + secret, "schema check", &out), 2) << out;
  EXPECT_EQ(out.find(secret), std::string::npos) << out;
  EXPECT_NE(out.find("password=***"), std::string::npos) << out;
  // Malformed: libpq quotes the token it stumbled on, here the password.
  EXPECT_EQ(ctl("host=127.0.0.1 password " + secret, "status", &out), 3) << out;
  EXPECT_EQ(out.find(secret), std::string::npos) << out;
  // Reachable, but the schema is missing (the server may ignore the password): exit 4.
  EXPECT_EQ(
      ctl(endpoints().pg + " password=" + secret, "--schema nowhere_at_all schema check", &out), 4)
      << out;
  EXPECT_EQ(out.find(secret), std::string::npos) << out;
  // Usage and configuration errors: exit 3.
  EXPECT_EQ(ctl(endpoints().pg, "--schema 'Bad-Name' status", &out), 3) << out;
  EXPECT_EQ(ctl(endpoints().pg, "no-such-command", &out), 3) << out;
  EXPECT_EQ(
      run_command(
          "env -u TXBOX_DATABASE_URL " + quote(txbox::test::program("txboxctl")) + " status", &out),
      3)
      << out;
  EXPECT_NE(out.find("TXBOX_DATABASE_URL"), std::string::npos) << out;
}

}  // namespace
