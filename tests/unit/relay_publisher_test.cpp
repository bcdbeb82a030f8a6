// The relay's publisher against librdkafka's mock cluster (in-process, loopback only).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <map>
#include <memory>
#include <set>
#include <thread>

#include "publisher.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::Delivery;
using txbox::relay::Publisher;
using txbox::relay::Row;

class RelayPublisher : public ::testing::Test {
 protected:
  void SetUp() override {
    txbox::detail::conf_ptr conf(rd_kafka_conf_new());
    char err[512];
    rd_kafka_conf_set(conf.get(), "log_level", "0", err, sizeof err);
    owner_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
    ASSERT_TRUE(owner_) << err;
    conf.release();  // rd_kafka_new took the conf on success
    mock_ = rd_kafka_mock_cluster_new(owner_.get(), 1);
    ASSERT_TRUE(mock_);
    for (const char* t : {"late", "cur", "ok"}) {
      ASSERT_EQ(rd_kafka_mock_topic_create(mock_, t, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    publisher_ = std::make_unique<Publisher>(txbox::relay::PublisherOptions{
        .kafka = {{"bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mock_)},
                  {"topic.metadata.refresh.interval.ms", "200"},
                  {"retry.backoff.ms", "50"}},
        .max_batch_bytes = 1u << 20,
        .stop_grace = 200ms});
  }
  void TearDown() override {
    publisher_.reset();
    if (mock_) rd_kafka_mock_cluster_destroy(mock_);
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
  std::size_t send(std::vector<Row>& r) {
    return publisher_->send(
        r, [](const std::string&) { return std::optional<std::string>(); }, [] { return true; });
  }
  std::vector<Delivery> await(const std::stop_token& stop = {}) {
    return publisher_->await(stop, 60s, [] {});
  }
  static std::size_t count(const std::vector<Delivery>& d, Delivery::state st) {
    return static_cast<std::size_t>(
        std::count_if(d.begin(), d.end(), [&](const Delivery& x) { return x.st == st; }));
  }

  txbox::detail::kafka_ptr owner_;
  rd_kafka_mock_cluster_t* mock_ = nullptr;
  std::unique_ptr<Publisher> publisher_;
};

TEST_F(RelayPublisher, ARoundIsAcknowledgedRowByRow) {
  auto r = rows("ok", 20);
  EXPECT_EQ(send(r), 0u);
  const auto d = await();
  ASSERT_EQ(d.size(), 20u);
  EXPECT_EQ(count(d, Delivery::state::acked), 20u);
  EXPECT_TRUE(r[0].payload.empty());  // librdkafka copied it: freed
}

TEST_F(RelayPublisher, RowsAfterAHeldOneOrAShortLeaseAreSkipped) {
  auto r = rows("ok", 4);
  r[2].shard = 1;
  r[3].shard = 1;
  r[0].topic = "weak";
  bool lease = true;
  int calls = 0;
  const auto short_rows = publisher_->send(
      r,
      [](const std::string& t) {
        return t == "weak" ? std::optional<std::string>("held") : std::nullopt;
      },
      [&] { return lease && ++calls < 2; });
  EXPECT_EQ(short_rows, 1u);  // row 3: the lease ran short after row 2 went out
  const auto d = await();
  EXPECT_EQ(d[0].st, Delivery::state::held);
  EXPECT_EQ(d[1].st, Delivery::state::skipped);  // behind its key's held head
  EXPECT_EQ(d[2].st, Delivery::state::acked);
  EXPECT_EQ(d[3].st, Delivery::state::skipped);
}

// A held row holds the later rows of its key, not the other keys of its shard (a weak topic
// stalled 1/64 of every other key: ClusterDurabilityRefuses...LaterRowsOfTheTopicAreHeld...).
TEST_F(RelayPublisher, AHeldRowHoldsItsKeyNotTheOtherKeysOfItsShard) {
  auto r = rows("ok", 3);  // one shard
  r[0].topic = "weak";
  r[0].key = "a";
  r[1].key = "b";
  r[2].key = "a";
  publisher_->send(
      r,
      [](const std::string& t) {
        return t == "weak" ? std::optional<std::string>("held") : std::nullopt;
      },
      [] { return true; });
  const auto d = await();
  EXPECT_EQ(d[0].st, Delivery::state::held);
  EXPECT_EQ(d[1].st, Delivery::state::acked);    // another key of the shard goes on
  EXPECT_EQ(d[2].st, Delivery::state::skipped);  // behind its key's held head
}

// Defect 3: a report of an earlier round never books against a row of the current round
// (the old relay matched reports by index into one shared vector).
TEST_F(RelayPublisher, ALateReportOfAnEarlierRoundIsNotBookedAgainstTheCurrentRound) {
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "late", 0, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "cur", 0, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto first = rows("late", 3);
  send(first);
  EXPECT_FALSE(publisher_->poll(300ms));  // no leader: waiting
  auto second = rows("cur", 3, 100);      // a new round while the first one is outstanding
  send(second);
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "late", 0, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (publisher_->late_reports() < 3 && std::chrono::steady_clock::now() < until) {
    publisher_->poll(100ms);
  }
  EXPECT_EQ(publisher_->late_reports(), 3u);
  EXPECT_FALSE(publisher_->poll(100ms)) << "a report of the first round completed the second";
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "cur", 0, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto d = await();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(count(d, Delivery::state::acked), 3u);
  EXPECT_EQ(publisher_->late_reports(), 3u);
}

// Pipelining: a round streamed while an earlier one waits for its leader stays outstanding;
// each report is booked against its own round and row.
TEST_F(RelayPublisher, StreamedRoundsStayOutstandingTogetherAndReportAgainstTheirOwnRows) {
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "late", 0, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto any = [](const std::string&) { return std::optional<std::string>(); };
  auto first = rows("late", 3);
  const auto a = publisher_->stream(first, any, [] { return true; });
  auto second = rows("ok", 4, 100);
  const auto b = publisher_->stream(second, any, [] { return true; });
  EXPECT_NE(a.round, b.round);
  EXPECT_EQ(count(a.outcomes, Delivery::state::pending), 3u);
  EXPECT_EQ(publisher_->streaming(), 7u);
  std::map<std::uint32_t, std::set<std::size_t>> acked;
  const auto collect = [&](std::chrono::milliseconds wait) {
    for (const auto& r : publisher_->reports(wait)) {
      EXPECT_EQ(r.delivery.st, Delivery::state::acked);
      EXPECT_TRUE(acked[r.round].insert(r.index).second) << "a row reported twice";
    }
  };
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (acked[b.round].size() < 4 && std::chrono::steady_clock::now() < until) collect(50ms);
  EXPECT_EQ(acked[b.round], (std::set<std::size_t>{0, 1, 2, 3}));
  EXPECT_TRUE(acked[a.round].empty()) << "the first round has no leader yet";
  EXPECT_EQ(publisher_->streaming(), 3u);
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "late", 0, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  while (acked[a.round].size() < 3 && std::chrono::steady_clock::now() < until) collect(50ms);
  EXPECT_EQ(acked[a.round], (std::set<std::size_t>{0, 1, 2}));
  EXPECT_EQ(publisher_->streaming(), 0u);
  EXPECT_EQ(publisher_->late_reports(), 0u);
}

TEST_F(RelayPublisher, AtStopTheRoundIsGivenUpAfterTheGrace) {
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock_, "cur", 0, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto r = rows("cur", 5);
  send(r);
  std::stop_source stop;
  stop.request_stop();
  const auto t0 = std::chrono::steady_clock::now();
  const auto d = await(stop.get_token());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(count(d, Delivery::state::acked), 0u);
  EXPECT_EQ(d.size(), 5u);
}

TEST_F(RelayPublisher, AFatalErrorFailsTheRoundAndTheProducerIsReplaced) {
  auto warm = rows("ok", 5);
  send(warm);
  ASSERT_EQ(count(await(), Delivery::state::acked), 5u);
  EXPECT_FALSE(publisher_->replace_if_fatal());
  constexpr std::int16_t produce_api = 0;  // ApiKey of ProduceRequest
  rd_kafka_mock_push_request_errors(mock_, produce_api, 1,
                                    RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  auto r = rows("ok", 5, 10);
  send(r);
  const auto d = await();
  EXPECT_EQ(count(d, Delivery::state::acked), 0u);
  EXPECT_TRUE(publisher_->replace_if_fatal());
  auto again = rows("ok", 5, 10);
  send(again);
  EXPECT_EQ(count(await(), Delivery::state::acked), 5u);
}

// Issue 25: librdkafka remembers a topic reported missing and refuses it locally until it asks
// the brokers again. A round that comes right after the topic was created must use it, not fail
// once more (its rows would wait another backoff).
TEST_F(RelayPublisher, ATopicReportedMissingIsUsedByTheNextRoundOnceCreated) {
  Publisher p(txbox::relay::PublisherOptions{
      .kafka = {{"bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mock_)},
                {"allow.auto.create.topics", "false"}},
      .max_batch_bytes = 1u << 20,
      .delivery_budget = 1000ms,
      .metadata_timeout = 1000ms,
      .stop_grace = 200ms});
  // The mock cluster creates any topic asked for: it answers as if "appears" did not exist.
  rd_kafka_mock_topic_set_error(mock_, "appears", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  const auto hold = [](const std::string&) { return std::optional<std::string>(); };
  auto first = rows("appears", 3);
  p.send(first, hold, [] { return true; });
  const auto missing = p.await({}, 60s, [] {});
  ASSERT_EQ(count(missing, Delivery::state::failed), 3u)
      << static_cast<int>(missing[0].st) << " " << missing[0].error;
  EXPECT_TRUE(missing[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
              missing[0].err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
      << rd_kafka_err2name(missing[0].err);
  rd_kafka_mock_topic_set_error(mock_, "appears", RD_KAFKA_RESP_ERR_NO_ERROR);  // created
  auto again = rows("appears", 3, 10);
  p.send(again, hold, [] { return true; });
  const auto out = p.await({}, 60s, [] {});
  EXPECT_EQ(count(out, Delivery::state::acked), 3u)
      << (out[0].error.empty() ? "" : "first row: " + out[0].error);
}

}  // namespace
