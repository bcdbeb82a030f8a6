// The harness broker really delivers with acks=all and an idempotent producer, and
// Debian's librdkafka 2.0.2 really negotiates idempotence with it (a producer id assigned).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace {

using namespace txbox::detail;

struct ProducerState {
  int delivered = 0;
  int failed = 0;
  std::string last_stats;
};

void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
  char err[512];
  ASSERT_EQ(rd_kafka_conf_set(conf, key, value.c_str(), err, sizeof err), RD_KAFKA_CONF_OK)
      << key << ": " << err;
}

TEST(KafkaHarness, IdempotentAcksAllRoundTripOfAThousandMessagesWithHeaders) {
  const std::string topic = txbox::test::unique_name("roundtrip");
  txbox::test::create_topic(topic, 3);

  ProducerState state;
  conf_ptr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", txbox::test::endpoints().kafka);
  set(conf.get(), "acks", "all");
  set(conf.get(), "enable.idempotence", "true");
  set(conf.get(), "statistics.interval.ms", "100");
  rd_kafka_conf_set_opaque(conf.get(), &state);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* op) {
    auto* s = static_cast<ProducerState*>(op);
    (m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? s->delivered : s->failed)++;
  });
  rd_kafka_conf_set_stats_cb(conf.get(), [](rd_kafka_t*, char* json, size_t len, void* op) {
    static_cast<ProducerState*>(op)->last_stats.assign(json, len);
    return 0;  // librdkafka frees json
  });
  char err[512];
  kafka_ptr producer(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  ASSERT_TRUE(producer) << err;
  conf.release();  // owned by the producer from here

  constexpr int k_count = 1000;
  for (int i = 0; i < k_count; ++i) {
    const std::string key = "key-" + std::to_string(i % 10);
    const std::string value = "value-" + std::to_string(i);
    const std::string id = "id-" + std::to_string(i);
    headers_ptr hdrs(rd_kafka_headers_new(2));
    rd_kafka_header_add(hdrs.get(), "ce_id", -1, id.data(), static_cast<ssize_t>(id.size()));
    rd_kafka_header_add(hdrs.get(), "seq", -1, value.data(), static_cast<ssize_t>(value.size()));
    const auto code = rd_kafka_producev(
        producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()), RD_KAFKA_V_END);
    ASSERT_EQ(code, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(code);
    hdrs.release();  // rd_kafka_producev took the headers on success
  }
  ASSERT_EQ(rd_kafka_flush(producer.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(state.delivered, k_count);
  EXPECT_EQ(state.failed, 0);

  // Idempotence really in effect: the broker assigned a producer id (InitProducerId).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  state.last_stats.clear();
  while (state.last_stats.empty() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_poll(producer.get(), 100);
  }
  ASSERT_FALSE(state.last_stats.empty()) << "no statistics from librdkafka";
  const auto stats = nlohmann::json::parse(state.last_stats);
  ASSERT_TRUE(stats.contains("eos")) << "librdkafka reports no idempotence state";
  EXPECT_EQ(stats["eos"]["idemp_state"], "Assigned") << stats["eos"].dump();
  EXPECT_GE(stats["eos"]["producer_id"].get<long long>(), 0) << stats["eos"].dump();
  char acks[16];
  size_t acks_len = sizeof acks;
  ASSERT_EQ(rd_kafka_conf_get(rd_kafka_conf(producer.get()), "acks", acks, &acks_len),
            RD_KAFKA_CONF_OK);
  EXPECT_TRUE(std::strcmp(acks, "all") == 0 || std::strcmp(acks, "-1") == 0) << acks;

  // Read everything back: values, keys and headers intact, per-key order kept.
  conf_ptr cconf(rd_kafka_conf_new());
  set(cconf.get(), "bootstrap.servers", txbox::test::endpoints().kafka);
  set(cconf.get(), "group.id", topic + "-reader");
  set(cconf.get(), "auto.offset.reset", "earliest");
  set(cconf.get(), "enable.auto.commit", "false");
  kafka_ptr consumer(rd_kafka_new(RD_KAFKA_CONSUMER, cconf.get(), err, sizeof err));
  ASSERT_TRUE(consumer) << err;
  cconf.release();
  rd_kafka_poll_set_consumer(consumer.get());
  partition_list_ptr subs(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(subs.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer.get(), subs.get()), RD_KAFKA_RESP_ERR_NO_ERROR);

  std::map<std::string, int> last_seq_per_key;
  int received = 0;
  const auto read_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (received < k_count && std::chrono::steady_clock::now() < read_deadline) {
    message_ptr msg(rd_kafka_consumer_poll(consumer.get(), 500));
    if (!msg || msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
    ASSERT_EQ(msg->err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_message_errstr(msg.get());
    const std::string key(static_cast<const char*>(msg->key), msg->key_len);
    const std::string value(static_cast<const char*>(msg->payload), msg->len);
    const int seq = std::stoi(value.substr(6));
    rd_kafka_headers_t* hdrs = nullptr;  // owned by the message
    ASSERT_EQ(rd_kafka_message_headers(msg.get(), &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
    const void* hv = nullptr;
    size_t hlen = 0;
    ASSERT_EQ(rd_kafka_header_get_last(hdrs, "ce_id", &hv, &hlen), RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(std::string(static_cast<const char*>(hv), hlen), "id-" + std::to_string(seq));
    ASSERT_EQ(rd_kafka_header_get_last(hdrs, "seq", &hv, &hlen), RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(std::string(static_cast<const char*>(hv), hlen), value);
    EXPECT_EQ(key, "key-" + std::to_string(seq % 10));
    auto [it, fresh] = last_seq_per_key.try_emplace(key, -1);
    EXPECT_GT(seq, it->second) << "order broken for " << key;
    it->second = seq;
    ++received;
  }
  EXPECT_EQ(received, k_count);
  rd_kafka_consumer_close(consumer.get());
}

}  // namespace
