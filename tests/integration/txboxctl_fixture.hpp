// The Txboxctl fixture: runs the built txboxctl against a schema of its own.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::test::ctl {

using nlohmann::json;
using txbox::test::endpoints;
using txbox::test::run_command;

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs txboxctl with `args` (already quoted where needed); stdout+stderr into `out`.
inline int ctl(const std::string& url, const std::string& args, std::string* out) {
  return run_command(
      quote(txbox::test::program("txboxctl")) + " --database-url " + quote(url) + " " + args, out);
}

// As ctl(), stdout only (for JSON).
inline int ctl_json(const std::string& url, const std::string& args, json* j) {
  std::string out;
  const int rc = run_command("(" + quote(txbox::test::program("txboxctl")) + " --database-url " +
                                 quote(url) + " " + args + " --json 2>/dev/null)",
                             &out);
  *j = json::parse(out, nullptr, false);
  EXPECT_FALSE(j->is_discarded()) << "not JSON: " << out;
  return rc;
}

class Txboxctl : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("ctl");
    txbox::test::create_schema(schema_);
    conn_ = std::make_unique<pqxx::connection>(endpoints().pg);
  }
  int run(const std::string& args, std::string* out) {
    return ctl(endpoints().pg, "--schema " + schema_ + " " + args, out);
  }
  int run_json(const std::string& args, json* j) {
    return ctl_json(endpoints().pg, "--schema " + schema_ + " " + args, j);
  }
  long count(const std::string& sql) {
    pqxx::nontransaction n(*conn_);
    return n.exec(sql)[0][0].as<long>();
  }
  // A dead outbox row; returns its id.
  long add_outbox_dead(const std::string& message_id, const std::string& topic,
                       const std::optional<std::string>& key, const std::string& payload) {
    pqxx::work tx(*conn_);
    const auto r = pq::exec1(
        tx,
        "INSERT INTO " + schema_ +
            ".outbox_dead (message_id, topic, key, payload, headers, created_at, attempts, error) "
            "VALUES ($1::uuid, $2, $3, $4, '[[\"ce_type\",\"OrderPlaced\"],[\"traceparent\","
            "\"00-ab-cd-01\"]]', '2020-01-02T03:04:05Z', 5, 'Broker: Message size too large') "
            "RETURNING id",
        message_id, topic, key ? key->c_str() : nullptr, pq::binary(payload));
    tx.commit();
    return r[0].as<long>();
  }
  long add_inbox_dead(const std::string& consumer, const std::string& message_id, long offset) {
    pqxx::work tx(*conn_);
    const auto r = pq::exec1(tx,
                             "INSERT INTO " + schema_ +
                                 ".inbox_dead (consumer, message_id, topic, \"partition\", "
                                 "\"offset\", key, payload, error, attempts) VALUES ($1, "
                                 "$2, 'orders', 0, $3, 'k'::bytea, 'p'::bytea, 'boom', 3) "
                                 "RETURNING id",
                             consumer, message_id, offset);
    tx.commit();
    return r[0].as<long>();
  }
  std::string schema_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace txbox::test::ctl
