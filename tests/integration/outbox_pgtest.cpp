// txbox::outbox against a real PostgreSQL with the migrations applied: the rows a commit
// leaves, batches, rejections, schema errors. How enqueue prepares its statements and locks
// its keys: outbox_statements_pgtest.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>

#include "harness.hpp"
#include "outbox_fixture.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using txbox::test::endpoints;
using txbox::test::OutboxTest;

TEST_F(OutboxTest, CommitMakesTheRowVisibleWithEveryField) {
  pqxx::connection c(endpoints().pg);
  const std::string payload("bin\0ary\xff", 8);
  txbox::Uuid id;
  {
    pqxx::work tx(c);
    id = outbox().enqueue(tx, {.topic = "orders",
                               .key = "order-42",
                               .payload = payload,
                               .headers = {{"traceparent", "00-abc-def-01"}},
                               .type = "OrderPlaced"});
    tx.commit();
  }
  EXPECT_EQ(id.version(), 7);
  pqxx::work tx(c);
  const auto row = pq::exec1(tx,
                             "SELECT message_id::text, topic, key, payload, headers::text, "
                             "shard, attempts, published_at IS NULL FROM " +
                                 schema_ + ".outbox");
  EXPECT_EQ(row[0].as<std::string>(), id.str());
  EXPECT_EQ(row[1].as<std::string>(), "orders");
  EXPECT_EQ(row[2].as<std::string>(), "order-42");
  EXPECT_EQ(pq::bytes_of(row[3]), payload);
  const auto headers = nlohmann::json::parse(row[4].as<std::string>());
  std::map<std::string, std::string> h;
  for (const auto& pair : headers) h[pair[0]] = pair[1];
  EXPECT_EQ(h["ce_type"], "OrderPlaced");
  EXPECT_EQ(h["ce_specversion"], "1.0");
  EXPECT_EQ(h["ce_source"], "txbox");
  EXPECT_EQ(h["traceparent"], "00-abc-def-01");
  EXPECT_FALSE(h["ce_time"].empty());
  // The shard is computed in the database from the key: same key, same shard.
  const auto shard = pq::exec1(tx, "SELECT (hashtext('order-42') & 63)::smallint")[0].as<int>();
  EXPECT_EQ(row[5].as<int>(), shard);
  EXPECT_EQ(row[6].as<int>(), 0);
  EXPECT_TRUE(row[7].as<bool>());
}

TEST_F(OutboxTest, RollbackLeavesNothing) {
  pqxx::connection c(endpoints().pg);
  {
    pqxx::work tx(c);
    outbox().enqueue(tx, {.topic = "orders", .key = "k", .payload = "x"});
    tx.abort();
  }
  {
    pqxx::work tx(c);
    outbox().enqueue(tx, {.topic = "orders", .payload = "y"});
    // destroyed without commit: rolled back
  }
  EXPECT_EQ(count(c), 0);
}

TEST_F(OutboxTest, BatchOfAThousandKeepsTheCallersOrder) {
  pqxx::connection c(endpoints().pg);
  std::vector<txbox::Message> batch;
  for (int i = 0; i < 1000; ++i) {
    batch.push_back({.topic = "orders",
                     .key = i % 3 == 0 ? std::nullopt
                                       : std::optional<std::string>("k" + std::to_string(i % 17)),
                     .payload = "payload-" + std::to_string(i)});
  }
  std::vector<txbox::Uuid> ids;
  {
    pqxx::work tx(c);
    ids = outbox().enqueue(tx, batch);
    tx.commit();
  }
  ASSERT_EQ(ids.size(), 1000u);
  pqxx::work tx(c);
  const auto rows =
      tx.exec("SELECT message_id::text, payload FROM " + schema_ + ".outbox ORDER BY id");
  ASSERT_EQ(rows.size(), 1000);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(rows[i][0].as<std::string>(), ids[static_cast<std::size_t>(i)].str());
    EXPECT_EQ(pq::bytes_of(rows[i][1]), "payload-" + std::to_string(i));
  }
}

TEST_F(OutboxTest, BatchLargerThanOneStatementIsSplitAndComplete) {
  pqxx::connection c(endpoints().pg);
  std::vector<txbox::Message> batch(30'000,
                                    txbox::Message{.topic = "t", .key = "same", .payload = "p"});
  pqxx::work tx(c);
  const auto ids = outbox().enqueue(tx, batch);
  tx.commit();
  EXPECT_EQ(ids.size(), batch.size());
  EXPECT_EQ(count(c), 30'000);
}

TEST_F(OutboxTest, EachRejectionLeavesNoRowAndTheTransactionUsable) {
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox ob({.schema = schema_, .max_payload_bytes = 100, .max_headers = 2});
  const std::vector<std::pair<std::string, txbox::Message>> bad = {
      {"bad topic", {.topic = "no spaces allowed", .payload = "x"}},
      {"empty topic", {.topic = "", .payload = "x"}},
      {"long topic", {.topic = std::string(250, 't'), .payload = "x"}},
      {"oversize", {.topic = "t", .payload = std::string(101, 'x')}},
      {"header name utf8", {.topic = "t", .payload = "x", .headers = {{"bad\xff", "v"}}}},
      {"header value utf8", {.topic = "t", .payload = "x", .headers = {{"h", "\xc0\xaf"}}}},
      {"empty header name", {.topic = "t", .payload = "x", .headers = {{"", "v"}}}},
      {"reserved header", {.topic = "t", .payload = "x", .headers = {{"ce_id", "forged"}}}},
      {"too many headers",
       {.topic = "t", .payload = "x", .headers = {{"a", "1"}, {"b", "2"}, {"c", "3"}}}},
      {"key utf8", {.topic = "t", .key = std::string("k\xfe"), .payload = "x"}},
  };
  pqxx::work tx(c);
  for (const auto& [what, m] : bad) {
    EXPECT_THROW(ob.enqueue(tx, m), txbox::message_rejected) << what;
    // The transaction is still usable: nothing reached the database.
    EXPECT_NO_THROW(tx.exec("SELECT 1")) << what;
  }
  // A batch with one bad message inserts none of them.
  std::vector<txbox::Message> batch = {{.topic = "t", .payload = "ok"}, bad[0].second};
  EXPECT_THROW(ob.enqueue(tx, batch), txbox::message_rejected);
  ob.enqueue(tx, {.topic = "t", .payload = std::string(100, 'x')});  // exactly at the limit
  tx.commit();
  EXPECT_EQ(count(c), 1);
}

TEST_F(OutboxTest, RejectionMessagesSayWhatIsWrong) {
  const txbox::Outbox ob({.schema = schema_, .max_payload_bytes = 10});
  pqxx::connection c(endpoints().pg);
  pqxx::work tx(c);
  try {
    ob.enqueue(tx, {.topic = "t", .payload = std::string(11, 'x')});
    FAIL() << "no exception";
  } catch (const txbox::message_rejected& e) {
    EXPECT_NE(std::string(e.what()).find("payload is 11 bytes, the maximum is 10"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(OutboxTest, InvalidSchemaNameIsAConfigError) {
  EXPECT_THROW(txbox::Outbox({.schema = "x; DROP TABLE t"}), txbox::config_error);
  EXPECT_THROW(txbox::Outbox({.schema = "Mixed"}), txbox::config_error);
  EXPECT_THROW(txbox::Outbox({.schema = "ok", .max_payload_bytes = 0}), txbox::config_error);
}

TEST_F(OutboxTest, UnmigratedSchemaIsASchemaErrorNamingTheFix) {
  pqxx::connection c(endpoints().pg);
  // With prepared statements the error comes from the PREPARE at the first execution.
  for (const bool prepare : {true, false}) {
    for (const std::size_t rows : {std::size_t{1}, std::size_t{3}, std::size_t{40}}) {
      pqxx::work tx(c);
      const txbox::Outbox ob({.schema = "no_such_schema", .prepare_statements = prepare});
      const std::vector<txbox::Message> batch(rows, txbox::Message{.topic = "t", .payload = "x"});
      try {
        ob.enqueue(tx, batch);
        ADD_FAILURE() << "no exception (prepare " << prepare << ", rows " << rows << ")";
      } catch (const txbox::schema_error& e) {
        EXPECT_NE(std::string(e.what()).find("apply txbox's migrations"), std::string::npos)
            << e.what();
      }
    }
  }
}

TEST_F(OutboxTest, ValuesAreBoundNotSpliced) {
  pqxx::connection c(endpoints().pg);
  const std::string evil = "'); DROP TABLE " + schema_ + ".outbox; --";
  {
    pqxx::work tx(c);
    outbox().enqueue(
        tx, {.topic = "t", .key = evil, .payload = evil, .headers = {{evil, evil}}, .type = evil});
    tx.commit();
  }
  pqxx::work tx(c);
  EXPECT_EQ(pq::exec1(tx, "SELECT key FROM " + schema_ + ".outbox")[0].as<std::string>(), evil);
}

TEST_F(OutboxTest, DefaultFunctionWritesToTheTxboxSchema) {
  pqxx::connection c(endpoints().pg);
  pqxx::work tx(c);
  const auto id = txbox::enqueue(tx, {.topic = "t", .payload = "x"});
  EXPECT_EQ(pq::exec1(tx, "SELECT count(*) FROM txbox.outbox WHERE message_id = $1", id.str())[0]
                .as<int>(),
            1);
  tx.abort();
}

}  // namespace
