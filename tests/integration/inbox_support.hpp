// Shared by the inbox failure tests: a producer of ce_id-tagged records and a fixture with a
// schema of its own, an effects table and a login role granted txbox_consumer.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/inbox.hpp"

namespace txbox::test {

/// A record to produce with a ce_id header (none when `id` is empty: not from a txbox relay).
struct IdRecord {
  std::string id;
  std::string value;
  std::int32_t partition = 0;
};

inline void produce_ids(const std::string& topic, const std::vector<IdRecord>& records) {
  char err[512];
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] :
       std::map<std::string, std::string>{{"bootstrap.servers", endpoints().kafka},
                                          {"acks", "all"},
                                          {"enable.idempotence", "true"}}) {
    ASSERT_EQ(rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err),
              RD_KAFKA_CONF_OK);
  }
  detail::kafka_ptr p(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  ASSERT_TRUE(p) << err;
  for (const auto& r : records) {
    detail::headers_ptr hdrs(rd_kafka_headers_new(1));
    if (!r.id.empty()) {
      rd_kafka_header_add(hdrs.get(), "ce_id", -1, r.id.data(), static_cast<ssize_t>(r.id.size()));
    }
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                p.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
                RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()),
                RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p.get(), 50);
    }
    ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
    (void)hdrs.release();  // owned by the message now
  }
  ASSERT_EQ(rd_kafka_flush(p.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/// n records "m0".."m<n-1>" spread over `partitions`.
inline std::vector<IdRecord> numbered_ids(int n, int partitions) {
  std::vector<IdRecord> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({"m" + std::to_string(i), "v" + std::to_string(i), i % partitions});
  }
  return out;
}

class InboxFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = unique_name("ibf");
    topic_ = unique_name("inbox_fail");
    role_ = unique_name("cons");
    create_schema(schema_);
    create_topic(topic_, 2);
    sql("CREATE TABLE " + schema_ +
        ".effects (message_id text, topic text, \"partition\" int, \"offset\" bigint)");
    sql("CREATE ROLE " + role_ + " LOGIN IN ROLE txbox_consumer");
    sql("GRANT INSERT, SELECT, UPDATE ON " + schema_ + ".effects TO " + role_);
  }

  /// Runs one statement as the database owner.
  static void sql(const std::string& statement) {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction(c).exec(statement);
  }
  static std::int64_t scalar(const std::string& statement) {
    pqxx::connection c(endpoints().pg);
    return pqxx::nontransaction(c).exec(statement)[0][0].as<std::int64_t>(0);
  }
  std::int64_t effects() { return scalar("SELECT count(*) FROM " + schema_ + ".effects"); }
  std::int64_t distinct_effects() {
    return scalar("SELECT count(DISTINCT message_id) FROM " + schema_ + ".effects");
  }
  std::int64_t dead() { return scalar("SELECT count(*) FROM " + schema_ + ".inbox_dead"); }

  /// The consumer's conninfo: the owner's, or the test role's (`as_role`), plus `extra`.
  std::string url(bool as_role, const std::string& extra = "") const {
    return endpoints().pg + (as_role ? " user=" + role_ : "") + " application_name=" + role_ +
           (extra.empty() ? "" : " " + extra);
  }

  ConsumerConfig config() const {
    ConsumerConfig c;
    c.name = "fail_" + schema_;
    c.topics = {topic_};
    c.database_url = url(false);
    c.schema = schema_;
    c.kafka = {{"bootstrap.servers", endpoints().kafka},
               {"session.timeout.ms", "6000"},
               {"heartbeat.interval.ms", "500"}};
    c.batch_wait = std::chrono::milliseconds(20);
    c.retry_backoff_min = std::chrono::milliseconds(20);
    c.retry_backoff_max = std::chrono::milliseconds(200);
    return c;
  }

  /// One effect row per call.
  Handler record_effect() const {
    const std::string table = schema_ + ".effects";
    return [table](pqxx::work& tx, const ReceivedMessage& m) {
      pq::exec(tx,
               "INSERT INTO " + table +
                   " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
               m.id, m.topic, m.partition, m.offset);
    };
  }

  /// Polls until `done` or `timeout`. An exception out of poll_once is a test failure (the
  /// consumer would have stopped) and ends the wait.
  static bool poll_until(Consumer& c, const std::function<bool()>& done,
                         std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      try {
        c.poll_once(std::chrono::milliseconds(100));
      } catch (const std::exception& e) {
        ADD_FAILURE() << "poll_once threw (Consumer::run would end): " << e.what();
        return false;
      }
      if (done()) return true;
    }
    return false;
  }

  std::string schema_, topic_, role_;
};

}  // namespace txbox::test
