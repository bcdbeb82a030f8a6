// The SQL enqueue's checks (migrations/V4): each rejection is its own SQLSTATE (class TX) with
// a message naming the rule, and inserts nothing. UTF-8 checks run in a SQL_ASCII database,
// the only kind where PostgreSQL text can hold invalid UTF-8.
#include <gtest/gtest.h>

#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using txbox::test::endpoints;

struct Call {
  std::string what{};  // the case, for failure messages
  std::string topic = "orders";
  std::optional<std::string> key = "k";
  std::optional<std::string> payload = std::string("x");
  std::string headers = "[]";
  std::optional<std::string> type{};
  std::optional<std::string> source = std::string("txbox");
  std::string sqlstate{};  // expected
  std::string rule{};      // expected in the message: "(rule <rule>)"
};

const char* opt(const std::optional<std::string>& v) {
  return v ? v->c_str() : nullptr;
}

// Calls <schema>.enqueue with `call`'s arguments (bound parameters) after `setup`; returns
// "ok" or "<sqlstate> <message>".
std::string outcome(const std::string& conninfo, const std::string& schema, const Call& call,
                    const std::string& setup = "") {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  if (!setup.empty()) tx.exec(setup);
  try {
    const std::string sql = "SELECT " + schema + ".enqueue($1, $2, $3::bytea, $4::jsonb, $5, $6)";
    if (call.payload) {
      pq::exec(tx, sql, call.topic, opt(call.key), pq::binary(*call.payload), call.headers,
               opt(call.type), opt(call.source));
    } else {
      pq::exec(tx, sql, call.topic, opt(call.key), nullptr, call.headers, opt(call.type),
               opt(call.source));
    }
  } catch (const pqxx::sql_error& e) {
    return e.sqlstate() + " " + e.what();
  }
  const auto rows = tx.exec("SELECT count(*) FROM " + schema + ".outbox")[0][0].as<int>();
  return rows == 1 ? "ok" : "ok but " + std::to_string(rows) + " rows";
}

void expect_rejected(const std::string& got, const Call& call) {
  EXPECT_EQ(got.substr(0, 6), call.sqlstate + " ") << call.what << ": " << got;
  EXPECT_NE(got.find("enqueue rejected (rule " + call.rule + ")"), std::string::npos)
      << call.what << ": " << got;
}

class SqlEnqueueRules : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("sqlrules");
    txbox::test::create_schema(schema_);
  }
  std::string schema_;
};

TEST_F(SqlEnqueueRules, EachRejectionNamesItsRule) {
  const std::string long_topic(250, 'a');
  const std::vector<Call> calls{
      {.what = "empty topic", .topic = "", .sqlstate = "TX001", .rule = "topic"},
      {.what = "topic with a space", .topic = "a b", .sqlstate = "TX001", .rule = "topic"},
      {.what = "topic '..'", .topic = "..", .sqlstate = "TX001", .rule = "topic"},
      {.what = "topic of 250", .topic = long_topic, .sqlstate = "TX001", .rule = "topic"},
      {.what = "non-ASCII topic", .topic = "ordr\u00e9", .sqlstate = "TX001", .rule = "topic"},
      {.what = "NULL payload", .payload = std::nullopt, .sqlstate = "TX002", .rule = "payload"},
      {.what = "payload over 1 MiB",
       .payload = std::string(1'048'577, 'p'),
       .sqlstate = "TX002",
       .rule = "payload"},
      {.what = "headers a string", .headers = R"("x")", .sqlstate = "TX005", .rule = "headers"},
      {.what = "header not a pair",
       .headers = R"([["a"]])",
       .sqlstate = "TX005",
       .rule = "headers"},
      {.what = "header name a number",
       .headers = R"([[1, "v"]])",
       .sqlstate = "TX005",
       .rule = "headers"},
      {.what = "empty header name",
       .headers = R"([["", "v"]])",
       .sqlstate = "TX006",
       .rule = "header name"},
      {.what = "header value a number",
       .headers = R"([["a", 1]])",
       .sqlstate = "TX007",
       .rule = "header value"},
      {.what = "reserved ce_id",
       .headers = R"([["ce_id", "x"]])",
       .sqlstate = "TX008",
       .rule = "reserved"},
      {.what = "reserved ce_type (object form)",
       .headers = R"({"ce_type": "x"})",
       .sqlstate = "TX008",
       .rule = "reserved"},
      {.what = "empty source", .source = std::string(), .sqlstate = "TX009", .rule = "source"},
      {.what = "NULL source", .source = std::nullopt, .sqlstate = "TX009", .rule = "source"},
  };
  for (const Call& call : calls) expect_rejected(outcome(endpoints().pg, schema_, call), call);
  // The limits: exactly at the limit passes.
  EXPECT_EQ(outcome(endpoints().pg, schema_,
                    {.what = "payload of 1 MiB", .payload = std::string(1'048'576, 'p')}),
            "ok");
  std::string headers = "[";
  for (int i = 0; i < 64; ++i) headers += (i ? "," : "") + std::string(R"(["h", "v"])");
  EXPECT_EQ(outcome(endpoints().pg, schema_, {.what = "64 headers", .headers = headers + "]"}),
            "ok");
  expect_rejected(outcome(endpoints().pg, schema_,
                          {.what = "65 headers", .headers = headers + R"(,["h", "v"]])"}),
                  {.what = "65 headers", .sqlstate = "TX005", .rule = "headers"});
}

// The limits are settings of the schema (<schema>.max_payload_bytes, <schema>.max_headers),
// like OutboxConfig's.
TEST_F(SqlEnqueueRules, LimitsAreSettings) {
  const std::string setup =
      "SET LOCAL " + schema_ + ".max_payload_bytes = 3; SET LOCAL " + schema_ + ".max_headers = 1";
  expect_rejected(outcome(endpoints().pg, schema_, {.what = "4 bytes", .payload = "1234"}, setup),
                  {.what = "4 bytes over 3", .sqlstate = "TX002", .rule = "payload"});
  EXPECT_EQ(outcome(endpoints().pg, schema_, {.what = "3 bytes", .payload = "123"}, setup), "ok");
  expect_rejected(outcome(endpoints().pg, schema_,
                          {.what = "2 headers", .headers = R"([["a", "1"], ["b", "2"]])"}, setup),
                  {.what = "2 headers over 1", .sqlstate = "TX005", .rule = "headers"});
}

// In a SQL_ASCII database PostgreSQL stores any bytes as text: enqueue checks UTF-8 itself.
TEST(SqlEnqueueUtf8, RejectsInvalidUtf8InASqlAsciiDatabase) {
  const std::string db = txbox::test::unique_name("asciidb");
  {
    pqxx::connection admin(endpoints().pg_admin);
    pqxx::nontransaction n(admin);
    const std::string owner = pqxx::connection(endpoints().pg).username();
    n.exec("CREATE DATABASE " + db + " ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' " +
           "TEMPLATE template0 OWNER " + owner);
  }
  const std::string conninfo = endpoints().pg + " dbname=" + db;
  std::string out;
  ASSERT_EQ(txbox::test::run_command("for f in '" + txbox::test::source_dir() +
                                         "'/migrations/V*__*.sql; do psql -X -q -v "
                                         "ON_ERROR_STOP=1 '" +
                                         conninfo + "' -f \"$f\" || exit 1; done 2>&1",
                                     &out),
            0)
      << out;
  const std::string bad = "\xff";
  const std::string surrogate = "\xed\xa0\x80";
  const std::string overlong = "\xc0\xaf";
  const std::vector<Call> calls{
      {.what = "key 0xff", .key = "k" + bad, .sqlstate = "TX003", .rule = "key"},
      {.what = "type a surrogate", .type = surrogate, .sqlstate = "TX004", .rule = "type"},
      {.what = "header name overlong",
       .headers = "[[\"" + overlong + "\", \"v\"]]",
       .sqlstate = "TX006",
       .rule = "header name"},
      {.what = "header value 0xff",
       .headers = "[[\"h\", \"" + bad + "\"]]",
       .sqlstate = "TX007",
       .rule = "header value"},
      {.what = "source 0xff", .source = bad, .sqlstate = "TX009", .rule = "source"},
  };
  for (const Call& call : calls) expect_rejected(outcome(conninfo, "txbox", call), call);
  EXPECT_EQ(outcome(conninfo, "txbox",
                    {.what = "valid UTF-8", .key = "cl\xc3\xa9", .type = "\xf0\x9f\x98\x80"}),
            "ok");
}

}  // namespace
