// The SQL enqueue (migrations/V4): what it stores, next to what the C++ enqueue stores; the
// per-key lock it shares with the C++ writers; its grants; psql as a client.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;

class SqlEnqueue : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("sqlenq");
    txbox::test::create_schema(schema_);
  }
  // SELECT <schema>.enqueue(topic, key, payload, headers, type) in `tx`; returns the id.
  std::string sql_enqueue(pqxx::transaction_base& tx, const std::string& key,
                          const std::string& payload, const std::string& headers = "[]",
                          const std::string& type = "") {
    return pq::exec1(tx, "SELECT " + schema_ + ".enqueue($1, $2, $3, $4::jsonb, $5)::text",
                     "orders", key, pq::binary(payload), headers,
                     type.empty() ? nullptr : type.c_str())[0]
        .as<std::string>();
  }
  txbox::Outbox outbox() const { return txbox::Outbox({.schema = schema_}); }
  std::string schema_;
};

// Header pairs of a stored row, ce_time dropped (it differs between two writes).
nlohmann::json without_time(const std::string& headers_text, std::string* time) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& pair : nlohmann::json::parse(headers_text)) {
    if (pair[0] == "ce_time") {
      *time = pair[1];
    } else {
      out.push_back(pair);
    }
  }
  return out;
}

TEST_F(SqlEnqueue, StoresWhatTheCxxEnqueueStores) {
  pqxx::connection c(endpoints().pg);
  const std::string payload("bin\0ary\xff", 8);
  std::string sql_id;
  txbox::Uuid cxx_id;
  {
    pqxx::work tx(c);
    cxx_id = outbox().enqueue(tx, {.topic = "orders",
                                   .key = "order-42",
                                   .payload = payload,
                                   .headers = {{"traceparent", "00-abc-def-01"}, {"b", "2"}},
                                   .type = "OrderPlaced"});
    sql_id = sql_enqueue(tx, "order-42", payload,
                         R"([["traceparent", "00-abc-def-01"], ["b", "2"]])", "OrderPlaced");
    tx.commit();
  }
  pqxx::nontransaction n(c);
  const auto rows = n.exec(
      "SELECT message_id::text, topic, key, payload, headers::text, shard "
      "FROM " +
      schema_ + ".outbox ORDER BY id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].as<std::string>(), cxx_id.str());
  EXPECT_EQ(rows[1][0].as<std::string>(), sql_id);
  for (int col : {1, 2, 5}) {
    EXPECT_EQ(rows[0][col].as<std::string>(), rows[1][col].as<std::string>()) << "column " << col;
  }
  EXPECT_EQ(pq::bytes_of(rows[1][3]), payload);
  std::string cxx_time, sql_time;
  const auto cxx_headers = without_time(rows[0][4].as<std::string>(), &cxx_time);
  const auto sql_headers = without_time(rows[1][4].as<std::string>(), &sql_time);
  EXPECT_EQ(sql_headers, cxx_headers);
  EXPECT_EQ(sql_headers.dump(),
            R"([["ce_specversion","1.0"],["ce_source","txbox"],["ce_type","OrderPlaced"],)"
            R"(["traceparent","00-abc-def-01"],["b","2"]])");
  // ce_time: the same RFC 3339 form (UTC, microseconds).
  const std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)");
  EXPECT_TRUE(std::regex_match(cxx_time, rfc3339)) << cxx_time;
  EXPECT_TRUE(std::regex_match(sql_time, rfc3339)) << sql_time;

  // A UUIDv7: version 7, RFC variant, its milliseconds the time of the write.
  const txbox::Uuid id = txbox::Uuid::parse(sql_id);
  EXPECT_EQ(id.version(), 7);
  EXPECT_EQ(id.bytes[8] & 0xC0, 0x80);
  const auto diff = static_cast<long long>(id.unix_ms()) - static_cast<long long>(cxx_id.unix_ms());
  EXPECT_LT(std::llabs(diff), 60'000) << sql_id << " vs " << cxx_id.str();
}

TEST_F(SqlEnqueue, KeylessMessageAndDefaults) {
  pqxx::connection c(endpoints().pg);
  pqxx::work tx(c);
  const auto id = pq::exec1(tx, "SELECT " + schema_ + ".enqueue('audit', NULL, '\\x00')::text")[0]
                      .as<std::string>();
  const auto row = pq::exec1(
      tx, "SELECT key IS NULL, headers::text, (hashtext(message_id::text) & 63) = shard FROM " +
              schema_ + ".outbox");
  EXPECT_TRUE(row[0].as<bool>());
  std::string time;
  EXPECT_EQ(without_time(row[1].as<std::string>(), &time).dump(),
            R"([["ce_specversion","1.0"],["ce_source","txbox"]])");
  EXPECT_TRUE(row[2].as<bool>()) << "a keyless message is sharded by its id";
  // Headers as an object, a source of one's own; no lock is taken without a key.
  tx.exec("SELECT " + schema_ +
          ".enqueue('audit', NULL, '', '{\"x\": \"1\"}', source => 'billing')");
  const auto last =
      pq::exec1(tx, "SELECT headers::text FROM " + schema_ + ".outbox ORDER BY id DESC LIMIT 1")[0]
          .as<std::string>();
  EXPECT_EQ(without_time(last, &time).dump(),
            R"([["ce_specversion","1.0"],["ce_source","billing"],["x","1"]])");
  EXPECT_EQ(pq::exec1(tx,
                      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                      "pg_backend_pid()")[0]
                .as<int>(),
            0);
  EXPECT_NE(id.find("-7"), std::string::npos) << id;
  EXPECT_EQ(pq::exec1(tx, "SELECT count(*) FROM " + schema_ + ".schema_version WHERE version = $1",
                      txbox::sql_enqueue_schema_version)[0]
                .as<int>(),
            1);
}

// The lock the SQL enqueue holds is the C++ writers' lock: namespace and key hash.
TEST_F(SqlEnqueue, HoldsTheCxxWritersKeyLock) {
  pqxx::connection c(endpoints().pg);
  pqxx::work tx(c);
  sql_enqueue(tx, "customer-7", "x");
  const auto row = pq::exec1(
      tx,
      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
      "AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2",
      txbox::detail::lock_namespace, "customer-7");
  EXPECT_EQ(row[0].as<int>(), 1);
}

// Runs `second` (a writer of `key` on its own connection) while `first` holds the key's lock:
// it must wait for first's commit, then land after it.
void expect_serialised(const std::string& schema,
                       const std::function<void(pqxx::transaction_base&)>& first,
                       const std::function<void(pqxx::transaction_base&)>& second) {
  pqxx::connection c1(endpoints().pg);
  pqxx::connection c2(endpoints().pg);
  const int pid1 = c1.backendpid();
  const int pid2 = c2.backendpid();
  pqxx::work tx1(c1);
  first(tx1);
  auto done = std::async(std::launch::async, [&] {
    pqxx::work tx2(c2);
    second(tx2);
    tx2.commit();
  });
  // The second writer is blocked by the first (pg_blocking_pids), not merely slow.
  bool blocked = false;
  pqxx::connection watch(endpoints().pg_admin);
  for (int i = 0; i < 100 && !blocked; ++i) {
    pqxx::nontransaction n(watch);
    blocked = pq::exec1(n, "SELECT $1 = ANY(pg_blocking_pids($2))", pid1, pid2)[0].as<bool>();
    if (!blocked) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(blocked) << "the second writer of the key did not wait for the first";
  EXPECT_EQ(done.wait_for(300ms), std::future_status::timeout);
  tx1.commit();
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready);
  done.get();
  pqxx::nontransaction n(c1);
  const auto rows = n.exec("SELECT payload FROM " + schema + ".outbox ORDER BY id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(pq::bytes_of(rows[0][0]), "first");
  EXPECT_EQ(pq::bytes_of(rows[1][0]), "second");
}

TEST_F(SqlEnqueue, SqlWriterWaitsForCxxWriterOfTheSameKey) {
  expect_serialised(
      schema_,
      [&](pqxx::transaction_base& tx) {
        outbox().enqueue(tx, {.topic = "orders", .key = "k-1", .payload = "first"});
      },
      [&](pqxx::transaction_base& tx) { sql_enqueue(tx, "k-1", "second"); });
}

TEST_F(SqlEnqueue, CxxWriterWaitsForSqlWriterOfTheSameKey) {
  expect_serialised(
      schema_, [&](pqxx::transaction_base& tx) { sql_enqueue(tx, "k-2", "first"); },
      [&](pqxx::transaction_base& tx) {
        // The batch form (its lock is taken in the insert's CTE).
        const std::vector<txbox::Message> batch{
            {.topic = "orders", .key = "k-2", .payload = "second"}};
        outbox().enqueue(tx, batch);
      });
}

TEST_F(SqlEnqueue, SqlWritersOfTheSameKeyAreSerialised) {
  expect_serialised(
      schema_, [&](pqxx::transaction_base& tx) { sql_enqueue(tx, "k-3", "first"); },
      [&](pqxx::transaction_base& tx) { sql_enqueue(tx, "k-3", "second"); });
}

TEST_F(SqlEnqueue, WritersOfOtherKeysDoNotWait) {
  pqxx::connection c1(endpoints().pg);
  pqxx::connection c2(endpoints().pg);
  pqxx::work tx1(c1);
  sql_enqueue(tx1, "a", "x");
  auto other = std::async(std::launch::async, [&] {
    pqxx::work tx2(c2);
    outbox().enqueue(tx2, {.topic = "orders", .key = "b", .payload = "y"});
    tx2.commit();
  });
  EXPECT_EQ(other.wait_for(10s), std::future_status::ready);
  other.get();
  tx1.commit();
}

// EXECUTE is granted to txbox_writer only (not PUBLIC, not the relay's role).
TEST_F(SqlEnqueue, OnlyTxboxWriterMayExecute) {
  const std::string writer = txbox::test::unique_name("svc");
  const std::string relay = txbox::test::unique_name("rel");
  const std::string nobody = txbox::test::unique_name("nob");
  {
    pqxx::connection owner(endpoints().pg);
    pqxx::nontransaction n(owner);
    n.exec("CREATE ROLE " + writer + " LOGIN IN ROLE txbox_writer");
    n.exec("CREATE ROLE " + relay + " LOGIN IN ROLE txbox_relay");
    n.exec("CREATE ROLE " + nobody + " LOGIN");
    n.exec("GRANT USAGE ON SCHEMA " + schema_ + " TO " + nobody);
  }
  auto call = [&](const std::string& user) {
    pqxx::connection c(endpoints().pg + " user=" + user);
    pqxx::work tx(c);
    try {
      tx.exec("SELECT " + schema_ + ".enqueue('orders', 'k', '\\x00')");
      tx.commit();
      return std::string("ok");
    } catch (const pqxx::insufficient_privilege&) {
      return std::string("denied");
    }
  };
  EXPECT_EQ(call(writer), "ok");
  EXPECT_EQ(call(relay), "denied");
  EXPECT_EQ(call(nobody), "denied");
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction n(c);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM " + schema_ + ".outbox")[0].as<int>(), 1);
  EXPECT_FALSE(pq::exec1(n, "SELECT prosecdef FROM pg_proc WHERE oid = '" + schema_ +
                                ".enqueue(text, text, bytea, jsonb, text, text)'::regprocedure")[0]
                   .as<bool>())
      << "documented as SECURITY INVOKER";
}

// psql as the client, as a DBA or a shell script would call it.
TEST_F(SqlEnqueue, FromPsql) {
  const std::string psql = "psql -X -qAt -v ON_ERROR_STOP=1 '" + endpoints().pg + "' ";
  std::string out;
  ASSERT_EQ(txbox::test::run_command(
                psql + "-c \"BEGIN\" -c \"SELECT " + schema_ +
                    ".enqueue('orders', 'order-1', convert_to('{}', 'UTF8'), type => 'Placed')\" "
                    "-c \"COMMIT\"",
                &out),
            0)
      << out;
  EXPECT_NE(out.find("-7"), std::string::npos) << "prints the UUIDv7: " << out;
  EXPECT_NE(txbox::test::run_command(
                psql + "-c \"SELECT " + schema_ + ".enqueue('no spaces', 'k', '')\"", &out),
            0);
  EXPECT_NE(out.find("rule topic"), std::string::npos) << out;
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction n(c);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM " + schema_ + ".outbox")[0].as<int>(), 1);
}

}  // namespace
