// The relay's producer against librdkafka's mock cluster: the hand-over's rules (held rows,
// a key's later rows, the leases running short, bad headers), txbox's enforced settings,
// fatal errors and a topic that appears.
#include <gtest/gtest.h>

#include <cstring>

#include "kafka_settings.hpp"
#include "relay_mock_kafka.hpp"
#include "sync_round.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::Outcome;
using txbox::relay::Producer;
using txbox::relay::ProducerOptions;
using txbox::relay::SyncRound;
using State = Outcome::State;

class RelayProducer : public txbox::relay::testing::MockKafka {};

// What the producer's handle says `key` is.
std::string conf_value(const Producer& p, const char* key) {
  char value[512];
  std::size_t size = sizeof value;
  if (rd_kafka_conf_get(rd_kafka_conf(p.handle()), key, value, &size) != RD_KAFKA_CONF_OK) {
    return "(unknown)";
  }
  return value;
}

TEST_F(RelayProducer, RowsAfterAHeldOneOrAShortLeaseAreSkipped) {
  // The clock moves 1 s per reading: the leases cover the first hand-over, not the second.
  const auto t0 = clock::now();
  int readings = 0;
  ProducerOptions o = options();
  o.now = [&] { return t0 + std::chrono::seconds(readings++); };
  Producer p(o);
  SyncRound round(p);
  auto r = rows("ok", 4);
  r[2].shard = 1;
  r[3].shard = 1;
  r[0].topic = "weak";
  auto gates = weak_held();
  gates.send_until = t0 + 500ms;
  const auto handed = round.send(std::move(r), gates);
  EXPECT_EQ(handed.lease_short, 1u);  // row 3: the lease ran short after row 2 went out
  EXPECT_EQ(handed.rows.size(), 4u);  // given back, in their order
  EXPECT_EQ(handed.rows[3].id, 4);
  const auto d = round.await({});
  EXPECT_EQ(d[0].state(), State::held);
  EXPECT_EQ(d[1].state(), State::skipped);  // behind its key's held head
  EXPECT_EQ(d[2].state(), State::acked);
  EXPECT_EQ(d[3].state(), State::skipped);
}

// A held row holds the later rows of its key, not the other keys of its shard (a weak topic
// stalled 1/64 of every other key: ClusterDurabilityRefuses...LaterRowsOfTheTopicAreHeld...).
TEST_F(RelayProducer, AHeldRowHoldsItsKeyNotTheOtherKeysOfItsShard) {
  Producer p(options());
  SyncRound round(p);
  auto r = rows("ok", 3);  // one shard
  r[0].topic = "weak";
  r[0].key = "a";
  r[1].key = "b";
  r[2].key = "a";
  round.send(std::move(r), weak_held());
  const auto d = round.await({});
  EXPECT_EQ(d[0].state(), State::held);
  EXPECT_EQ(d[0].error(), "held");
  EXPECT_EQ(d[1].state(), State::acked);    // another key of the shard goes on
  EXPECT_EQ(d[2].state(), State::skipped);  // behind its key's held head
}

TEST_F(RelayProducer, HandedRowsAreFreedAndTheOthersKeepTheirPayload) {
  Producer p(options());
  auto r = rows("ok", 2);
  r[0].topic = "weak";
  r[1].key = "other";
  const auto handed = p.hand_over(std::move(r), weak_held());
  EXPECT_EQ(handed.handed, 1u);
  EXPECT_EQ(handed.rows[0].payload, "p0");      // held: still to be sent
  EXPECT_TRUE(handed.rows[1].payload.empty());  // librdkafka copied it: freed
  EXPECT_EQ(handed.rows[1].key, "other");       // the key stays: the settle orders by it
  EXPECT_TRUE(handed.outcomes[1].in_flight());
}

// A row whose headers are not an array of [name, value] is refused for good (outbox_dead);
// being permanent, it does not hold its key's later rows.
TEST_F(RelayProducer, BadHeadersFailTheRowForGoodWithoutHoldingItsKey) {
  Producer p(options());
  SyncRound round(p);
  auto r = rows("ok", 2);
  r[0].headers = "{\"not\": \"an array\"}";
  round.send(std::move(r), open_gates());
  const auto d = round.await({});
  EXPECT_EQ(d[0].state(), State::failed);
  EXPECT_TRUE(d[0].dead());
  EXPECT_NE(d[0].error().find("outbox.headers"), std::string::npos) << d[0].error();
  EXPECT_EQ(d[1].state(), State::acked);
}

// The keys txbox manages win over the user's properties (config refuses them; these are
// what a library user passing ProducerOptions directly would get).
TEST_F(RelayProducer, TxboxEnforcesItsSettingsOverTheUsersProperties) {
  ProducerOptions o = options();
  o.kafka["acks"] = "1";
  o.kafka["enable.idempotence"] = "false";
  const Producer p(o);
  EXPECT_TRUE(conf_value(p, "acks") == "-1" || conf_value(p, "acks") == "all")
      << conf_value(p, "acks");
  EXPECT_EQ(conf_value(p, "enable.idempotence"), "true");
  EXPECT_EQ(conf_value(p, "message.timeout.ms"), "0");
}

TEST_F(RelayProducer, AFatalErrorFailsTheRoundAndTheProducerIsReplaced) {
  Producer p(options());
  SyncRound round(p);
  round.send(rows("ok", 5), open_gates());
  ASSERT_EQ(count(round.await({}), State::acked), 5u);
  EXPECT_FALSE(p.replace_if_fatal());
  constexpr std::int16_t produce_api = 0;  // ApiKey of ProduceRequest
  rd_kafka_mock_push_request_errors(m_mock, produce_api, 1,
                                    RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  round.send(rows("ok", 5, 10), open_gates());
  const auto d = round.await({});
  EXPECT_EQ(count(d, State::acked), 0u);
  EXPECT_TRUE(p.replace_if_fatal());
  round.send(rows("ok", 5, 10), open_gates());
  EXPECT_EQ(count(round.await({}), State::acked), 5u);
}

// Issue 25: librdkafka remembers a topic reported missing and refuses it locally until it asks
// the brokers again. A round that comes right after the topic was created must use it, not fail
// once more (its rows would wait another backoff).
TEST_F(RelayProducer, ATopicReportedMissingIsUsedByTheNextRoundOnceCreated) {
  Producer p(ProducerOptions{
      .kafka = {{"bootstrap.servers", bootstraps()}, {"allow.auto.create.topics", "false"}},
      .max_batch_bytes = 1u << 20,
      .delivery_budget = 1000ms,
      .metadata_timeout = 1000ms,
      .stop_grace = 200ms});
  SyncRound round(p);
  // The mock cluster creates any topic asked for: it answers as if "appears" did not exist.
  rd_kafka_mock_topic_set_error(m_mock, "appears", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  round.send(rows("appears", 3), open_gates());
  const auto missing = round.await({});
  ASSERT_EQ(count(missing, State::failed), 3u)
      << static_cast<int>(missing[0].state()) << " " << missing[0].error();
  EXPECT_TRUE(missing[0].err() == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
              missing[0].err() == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
      << rd_kafka_err2name(missing[0].err());
  EXPECT_TRUE(missing[0].missing_topic());
  rd_kafka_mock_topic_set_error(m_mock, "appears", RD_KAFKA_RESP_ERR_NO_ERROR);  // created
  round.send(rows("appears", 3, 10), open_gates());
  const auto out = round.await({});
  EXPECT_EQ(count(out, State::acked), 3u)
      << (out[0].final() ? "first row: " + out[0].error() : std::string());
}

}  // namespace
