// Record decoding against librdkafka's mock cluster: a real rd_kafka_message_t, no broker.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
// rdkafka_mock.h needs rdkafka.h first.
#include <librdkafka/rdkafka_mock.h>

#include <cstring>
#include <memory>
#include <string>

#include "record.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace {

using txbox::inbox::decode_record;
using txbox::inbox::dedupe_id;
using txbox::inbox::storable_text;

// A producer that brings a one-broker mock cluster; records produced to it, consumed back.
class InboxRecordMock : public ::testing::Test {
 protected:
  void SetUp() override {
    char err[512];
    txbox::detail::conf_ptr conf(rd_kafka_conf_new());
    ASSERT_EQ(rd_kafka_conf_set(conf.get(), "test.mock.num.brokers", "1", err, sizeof err),
              RD_KAFKA_CONF_OK);
    producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
    ASSERT_TRUE(producer_) << err;
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(producer_.get()));
    ASSERT_EQ(rd_kafka_mock_topic_create(rd_kafka_handle_mock_cluster(producer_.get()), "t", 1, 1),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  void produce(const char* key, const std::string& value, rd_kafka_headers_t* hdrs,
               std::int64_t timestamp_ms) {
    const auto e =
        rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_KEY(const_cast<char*>(key), key ? std::strlen(key) : 0),
                          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
    ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(producer_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  // Consumes the record at `offset` and decodes it.
  txbox::ReceivedMessage consume(std::int64_t offset) {
    char err[512];
    txbox::detail::conf_ptr conf(rd_kafka_conf_new());
    rd_kafka_conf_set(conf.get(), "bootstrap.servers", bootstrap_.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf.get(), "group.id", "decode", err, sizeof err);
    txbox::detail::kafka_ptr c(rd_kafka_new(RD_KAFKA_CONSUMER, conf.release(), err, sizeof err));
    EXPECT_TRUE(c) << err;
    rd_kafka_poll_set_consumer(c.get());
    txbox::detail::partition_list_ptr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), "t", 0)->offset = offset;
    rd_kafka_assign(c.get(), list.get());
    for (int i = 0; i < 100; ++i) {
      txbox::detail::message_ptr m(rd_kafka_consumer_poll(c.get(), 100));
      if (m && !m->err) {
        auto r = decode_record(*m);
        rd_kafka_consumer_close(c.get());
        return r;
      }
    }
    ADD_FAILURE() << "no record at offset " << offset;
    return {};
  }

  txbox::detail::kafka_ptr producer_;
  std::string bootstrap_;
};

TEST_F(InboxRecordMock, DecodesKeyPayloadHeadersTimestampAndId) {
  rd_kafka_headers_t* h = rd_kafka_headers_new(2);
  rd_kafka_header_add(h, "ce_id", -1, "order-1", 7);
  rd_kafka_header_add(h, "ce_type", -1, nullptr, 0);
  produce("k1", std::string("pay\0load", 8), h, 1'700'000'000'123);
  const auto r = consume(0);
  EXPECT_EQ(r.topic, "t");
  EXPECT_EQ(r.partition, 0);
  EXPECT_EQ(r.offset, 0);
  ASSERT_TRUE(r.key);
  EXPECT_EQ(*r.key, "k1");
  EXPECT_EQ(r.payload, std::string("pay\0load", 8));
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0].name, "ce_id");
  EXPECT_EQ(r.headers[0].value, "order-1");
  EXPECT_EQ(r.headers[1].name, "ce_type");
  EXPECT_EQ(r.headers[1].value, "");
  EXPECT_EQ(r.timestamp.time_since_epoch(), std::chrono::milliseconds(1'700'000'000'123));
  EXPECT_EQ(r.id, "order-1");
  EXPECT_EQ(r.attempt, 1);
}

TEST_F(InboxRecordMock, NullKeyAndNoHeadersGiveThePositionAsId) {
  produce(nullptr, "x", nullptr, 0);
  produce(nullptr, "y", nullptr, 0);
  const auto r = consume(1);
  EXPECT_FALSE(r.key);
  EXPECT_TRUE(r.headers.empty());
  EXPECT_EQ(r.offset, 1);
  EXPECT_EQ(r.id, "kafka:t/0/1");
}

txbox::ReceivedMessage with_id(const std::string& id) {
  txbox::ReceivedMessage m;
  m.topic = "orders";
  m.partition = 3;
  m.offset = 9;
  m.headers = {{"ce_id", id}};
  return m;
}

TEST(InboxRecord, DedupeIdKeepsTextHexesBytesAndFallsBackToThePosition) {
  EXPECT_EQ(dedupe_id(with_id("abc")), "abc");
  EXPECT_EQ(dedupe_id(with_id("a\xff")), "ce_id-hex:61ff");
  EXPECT_EQ(dedupe_id(with_id(std::string("a\0b", 3))), "ce_id-hex:610062");
  EXPECT_EQ(dedupe_id(with_id("")), "kafka:orders/3/9");
  EXPECT_EQ(dedupe_id(with_id(std::string(513, 'x'))), "kafka:orders/3/9");
  EXPECT_EQ(dedupe_id(with_id(std::string(512, 'x'))), std::string(512, 'x'));
  txbox::ReceivedMessage none = with_id("");
  none.headers.clear();
  EXPECT_EQ(dedupe_id(none), "kafka:orders/3/9");
}

TEST(InboxRecord, StorableTextEscapesWhatPostgresTextCannotHold) {
  EXPECT_EQ(storable_text("plain ü"), "plain ü");
  EXPECT_EQ(storable_text("bad \xff\xfe bytes"), "bad \\xff\\xfe bytes");
  EXPECT_EQ(storable_text(std::string("nul\0", 4)), "nul\\x00");
}

}  // namespace
