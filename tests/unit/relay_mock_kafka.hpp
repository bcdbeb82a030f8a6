// librdkafka's mock cluster (in-process, loopback only) for the relay's producer tests, and
// the helpers they share: rows of a topic, counting outcomes, gates that let everything out.
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "producer.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay::testing {

using namespace std::chrono_literals;

class MockKafka : public ::testing::Test {
 protected:
  void SetUp() override {
    detail::conf_ptr conf(rd_kafka_conf_new());
    char err[512];
    rd_kafka_conf_set(conf.get(), "log_level", "0", err, sizeof err);
    m_owner.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
    ASSERT_TRUE(m_owner) << err;
    conf.release();  // rd_kafka_new took the conf on success
    m_mock = rd_kafka_mock_cluster_new(m_owner.get(), 1);
    ASSERT_TRUE(m_mock);
    for (const char* t : {"late", "cur", "ok"}) {
      ASSERT_EQ(rd_kafka_mock_topic_create(m_mock, t, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }
  void TearDown() override {
    if (m_mock) rd_kafka_mock_cluster_destroy(m_mock);
  }

  /// The options the tests' producers start from.
  [[nodiscard]] ProducerOptions options() const {
    return ProducerOptions{.kafka = {{"bootstrap.servers", bootstraps()},
                                     {"topic.metadata.refresh.interval.ms", "200"},
                                     {"retry.backoff.ms", "50"}},
                           .max_batch_bytes = 1u << 20,
                           .stop_grace = 200ms};
  }
  [[nodiscard]] std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(m_mock); }
  /// No leader for `topic` (-1) or broker 1 leads it again.
  void set_leader(const char* topic, int broker) {
    ASSERT_EQ(rd_kafka_mock_partition_set_leader(m_mock, topic, 0, broker),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  static std::vector<Row> rows(const std::string& topic, int n, int first_id = 1) {
    std::vector<Row> out;
    for (int i = 0; i < n; ++i) {
      Row r;
      r.id = first_id + i;
      r.message_id = "00000000-0000-0000-0000-00000000000" + std::to_string(i % 10);
      r.topic = topic;
      r.key = "k";
      r.payload = "p" + std::to_string(i);
      r.headers = "[]";
      out.push_back(std::move(r));
    }
    return out;
  }
  static std::size_t count(const std::vector<Outcome>& d, Outcome::State st) {
    return static_cast<std::size_t>(
        std::count_if(d.begin(), d.end(), [&](const Outcome& x) { return x.state() == st; }));
  }
  /// Gates that let every row out (nothing held, the leases never run short).
  static RoundGates open_gates() { return {}; }
  /// Gates that hold the rows of topic "weak".
  static RoundGates weak_held() {
    RoundGates g;
    g.held["weak"] = "held";
    return g;
  }

  detail::kafka_ptr m_owner;
  rd_kafka_mock_cluster_t* m_mock = nullptr;
};

}  // namespace txbox::relay::testing
