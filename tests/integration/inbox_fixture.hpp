// The InboxTest fixture: txbox::inbox on the real broker and database. Shared by
// inbox_kafkatest.cpp and inbox_resilience_kafkatest.cpp.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "harness.hpp"
#include "inbox_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/inbox.hpp"

namespace txbox::test {

using namespace std::chrono_literals;

// A record to produce; an empty id sends no ce_id header (not from a txbox relay).
using Out = IdRecord;

inline void produce(const std::string& topic, const std::vector<Out>& records) {
  produce_ids(topic, records);
}

/// One test's schema with an effects table and 4-partition topic, consumer configs with short
/// timeouts, and counts of what took effect.
class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("ib");
    topic_ = txbox::test::unique_name("inbox_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 4);
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction n(c);
    pq::exec0(n,
              "CREATE TABLE " + schema_ +
                  ".effects (message_id text, topic text, \"partition\" int, \"offset\" bigint)");
  }

  txbox::ConsumerConfig config(const std::string& name = "projector") {
    txbox::ConsumerConfig c;
    c.name = name + "_" + schema_;
    c.topics = {topic_};
    c.database_url = endpoints().pg;
    c.schema = schema_;
    c.kafka = {{"bootstrap.servers", endpoints().kafka},
               {"session.timeout.ms", "6000"},
               {"heartbeat.interval.ms", "500"}};
    c.batch_wait = 20ms;
    c.retry_backoff_min = 20ms;
    c.retry_backoff_max = 200ms;
    return c;
  }

  // The handler the tests use: one row in <schema>.effects per call.
  txbox::Handler record_effect() {
    const std::string table = schema_ + ".effects";
    return [table](pqxx::work& tx, const txbox::ReceivedMessage& m) {
      pq::exec(tx,
               "INSERT INTO " + table +
                   " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
               m.id, m.topic, m.partition, m.offset);
    };
  }

  std::int64_t scalar(const std::string& sql) {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction n(c);
    return n.exec(sql)[0][0].as<std::int64_t>(0);
  }
  std::int64_t effects() { return scalar("SELECT count(*) FROM " + schema_ + ".effects"); }
  std::int64_t distinct_effects() {
    return scalar("SELECT count(DISTINCT message_id) FROM " + schema_ + ".effects");
  }

  // Polls until `done` or `timeout`; returns whether `done` became true.
  static bool poll_until(txbox::Consumer& c, const std::function<bool()>& done,
                         std::chrono::seconds timeout = 60s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      c.poll_once(100ms);
      if (done()) return true;
    }
    return false;
  }

  // D3: partitions move between consumers while a handler outlives max.poll.interval.ms.
  void moving_partitions_with_a_slow_handler(const std::string& strategy);

  std::string schema_, topic_;
};

inline std::vector<Out> numbered(int n, int partitions, const std::string& prefix = "m") {
  std::vector<Out> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({prefix + std::to_string(i), "v" + std::to_string(i), i % partitions});
  }
  return out;
}

}  // namespace txbox::test
