// The relay's small values: a row's outcome and the questions it answers, a round's gates
// from the lease view, and the librdkafka keys txbox manages (set on its producers, refused
// in the config).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>

#include "kafka_settings.hpp"
#include "round.hpp"
#include "txbox/error.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::LeaseView;
using txbox::relay::Outcome;
using State = Outcome::State;

TEST(RelayOutcome, EachStateAnswersTheSettlesQuestions) {
  const Outcome pending;
  EXPECT_EQ(pending.state(), State::pending);
  EXPECT_FALSE(pending.final());
  EXPECT_TRUE(pending.in_flight());
  EXPECT_TRUE(pending.retryable());  // still pending at the settle: its report never came

  const auto acked = Outcome::acked();
  EXPECT_TRUE(acked.final() && acked.is_acked());
  EXPECT_FALSE(acked.retryable() || acked.dead() || acked.untouched());

  const auto transient = Outcome::failed(RD_KAFKA_RESP_ERR__TRANSPORT);
  EXPECT_TRUE(transient.final() && transient.retryable());
  EXPECT_FALSE(transient.dead());
  EXPECT_EQ(transient.error(), rd_kafka_err2str(RD_KAFKA_RESP_ERR__TRANSPORT));

  const auto too_large = Outcome::failed(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "too large");
  EXPECT_TRUE(too_large.final() && too_large.dead());
  EXPECT_FALSE(too_large.retryable());
  EXPECT_EQ(too_large.error(), "too large");

  const auto held = Outcome::held("weak topic");
  EXPECT_TRUE(held.final() && held.retryable());  // never dead: retried with backoff
  EXPECT_FALSE(held.dead() || held.in_flight());
  EXPECT_EQ(held.error(), "weak topic");

  const auto skipped = Outcome::skipped("waits");
  EXPECT_TRUE(skipped.final() && skipped.untouched());
  EXPECT_FALSE(skipped.retryable() || skipped.dead());

  // Given up is a state of its own, no longer "pending with _TIMED_OUT".
  const auto given_up = Outcome::given_up();
  EXPECT_EQ(given_up.state(), State::given_up);
  EXPECT_TRUE(given_up.final() && given_up.retryable());
  EXPECT_FALSE(given_up.in_flight() || given_up.dead());
  EXPECT_NE(given_up.error().find("given up"), std::string::npos);
}

TEST(RelayOutcome, AMissingTopicIsToldFromOtherFailures) {
  EXPECT_TRUE(Outcome::failed(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART).missing_topic());
  EXPECT_TRUE(Outcome::failed(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC).missing_topic());
  EXPECT_TRUE(Outcome::failed(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC).retryable());
  EXPECT_FALSE(Outcome::failed(RD_KAFKA_RESP_ERR__TRANSPORT).missing_topic());
}

// The gates are read as deadlines: a view covers `budget` at `now` exactly until until(budget).
RC_GTEST_PROP(RelayRoundGates, UntilIsTheLastMomentTheViewCovers, ()) {
  LeaseView v;
  if (*rc::gen::arbitrary<bool>()) v.epochs[0] = 1;
  const auto base = clock::now();
  v.valid_until = base + std::chrono::milliseconds(*rc::gen::inRange(-10'000, 10'000));
  const auto now = base + std::chrono::milliseconds(*rc::gen::inRange(-10'000, 10'000));
  const auto budget = std::chrono::milliseconds(*rc::gen::inRange(0, 10'000));
  RC_ASSERT(v.covers(now, budget) == (now <= v.until(budget)));
}

TEST(RelayKafkaSettings, TheProducersGetWhatTxboxEnforces) {
  using txbox::relay::enforced_producer_settings;
  using Settings = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(
      enforced_producer_settings(""),
      (Settings{{"acks", "all"}, {"enable.idempotence", "true"}, {"message.timeout.ms", "0"}}));
  EXPECT_EQ(enforced_producer_settings("txbox-x-lane-0"),
            (Settings{{"acks", "all"},
                      {"enable.idempotence", "true"},
                      {"transactional.id", "txbox-x-lane-0"}}));
}

TEST(RelayKafkaSettings, TheConfigRefusesEveryManagedKeyButTheValuesTxboxSetsItself) {
  using txbox::relay::check_managed_kafka_keys;
  EXPECT_NO_THROW(check_managed_kafka_keys({{"acks", "all"}, {"enable.idempotence", "true"}}));
  EXPECT_NO_THROW(check_managed_kafka_keys({{"acks", "-1"}, {"linger.ms", "50"}}));
  for (const auto& m : txbox::relay::managed_kafka_keys()) {
    const std::string key(m.key);
    try {
      check_managed_kafka_keys({{key, "7"}});
      ADD_FAILURE() << key << " = 7 was accepted";
    } catch (const txbox::config_error& e) {
      EXPECT_NE(std::string(e.what()).find("kafka." + key), std::string::npos) << e.what();
    }
  }
  // Every key the producers get is one the config manages (named once).
  const auto& keys = txbox::relay::managed_kafka_keys();
  for (const auto& setting : txbox::relay::enforced_producer_settings("id")) {
    const std::string& key = setting.first;  // no structured binding: captured below (clang 14)
    EXPECT_TRUE(std::any_of(keys.begin(), keys.end(), [&](const auto& m) { return m.key == key; }))
        << key;
  }
}

}  // namespace
