// The relay's view of Kafka (relay/src/kafka_reach): what a relay may do with shards and
// claims from the outcomes of its broker probe, on an injected clock.
#include <gtest/gtest.h>

#include "health.hpp"
#include "kafka_reach.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::Health;
using txbox::relay::KafkaReach;
using txbox::relay::lease_intent;
using txbox::relay::reach_options;
using txbox::relay::ReachOptions;

const clock::time_point t0{};
const ReachOptions opt{
    .probe_timeout = 1s, .probe_interval = 2s, .retry_interval = 250ms, .give_back_after = 5s};

TEST(RelayReach, NothingBeforeTheBrokersAnsweredOnce) {
  const KafkaReach r(opt);
  const auto v = r.verdict(t0 + 1h);
  EXPECT_FALSE(v.reachable);  // no shard, no claim, not ready
  EXPECT_FALSE(v.give_back);  // nothing held to give back
  EXPECT_TRUE(v.why.empty()) << "no probe ended: nothing to log yet";
  EXPECT_EQ(r.next_probe(), clock::time_point{}) << "the first probe is due at once";
}

TEST(RelayReach, AnAnswerMakesItReachableAndPacesTheNextProbe) {
  KafkaReach r(opt);
  r.probed(t0, "");
  EXPECT_TRUE(r.verdict(t0).reachable);
  EXPECT_TRUE(r.verdict(t0 + 1h).reachable) << "until a probe fails";
  EXPECT_EQ(r.next_probe(), t0 + 2s);
}

TEST(RelayReach, ALossIsAtOnceNotReachableAndAfterTheBoundGivesBack) {
  KafkaReach r(opt);
  r.probed(t0, "");
  r.probed(t0 + 2s, "no answer");
  EXPECT_EQ(r.next_probe(), t0 + 2s + 250ms) << "retried soon: the recovery is noticed early";
  auto v = r.verdict(t0 + 2s);
  EXPECT_FALSE(v.reachable);
  EXPECT_EQ(v.why, "no answer");
  EXPECT_FALSE(v.give_back);
  // Later failures do not move the start of the loss.
  r.probed(t0 + 4s, "still no answer");
  EXPECT_EQ(r.verdict(t0 + 4s).why, "still no answer");
  EXPECT_FALSE(r.verdict(t0 + 7s - 1ms).give_back);
  EXPECT_TRUE(r.verdict(t0 + 7s).give_back);
}

TEST(RelayReach, AnAnswerEndsTheLossAndTheNextLossCountsAfresh) {
  KafkaReach r(opt);
  r.probed(t0, "down");
  EXPECT_TRUE(r.verdict(t0 + 10s).give_back);
  r.probed(t0 + 10s, "");
  EXPECT_TRUE(r.verdict(t0 + 10s).reachable);
  EXPECT_FALSE(r.verdict(t0 + 10s).give_back);
  r.probed(t0 + 12s, "down again");
  EXPECT_FALSE(r.verdict(t0 + 16s).give_back);
  EXPECT_TRUE(r.verdict(t0 + 17s).give_back);
}

TEST(RelayReach, TheLeaseIntentFollowsTheVerdict) {
  KafkaReach r(opt);
  r.probed(t0, "");
  const auto up = lease_intent(r.verdict(t0), {3, 4});
  EXPECT_TRUE(up.publish);
  EXPECT_FALSE(up.give_back);
  EXPECT_EQ(up.busy, (std::set<int>{3, 4})) << "in flight: kept beyond the share until settled";
  r.probed(t0 + 1s, "down");
  const auto lost = lease_intent(r.verdict(t0 + 1s), {3, 4});
  EXPECT_FALSE(lost.publish) << "no heartbeat, no shard taken";
  EXPECT_FALSE(lost.give_back) << "a short loss keeps the shards";
  const auto gone = lease_intent(r.verdict(t0 + 6s), {3, 4});
  EXPECT_FALSE(gone.publish);
  EXPECT_TRUE(gone.give_back);
  EXPECT_EQ(gone.busy, (std::set<int>{3, 4})) << "shards with rows in flight stay";
}

// Given back only after the lease ttl plus the time a loss takes to notice: when every relay
// lost Kafka, each sees the others' heartbeats stale by then and keeps its shards.
TEST(RelayReach, OptionsFollowTheLeaseTtl) {
  const auto d = reach_options(10s);
  EXPECT_EQ(d.probe_timeout, 2s);
  EXPECT_EQ(d.probe_interval, 2s);
  EXPECT_EQ(d.give_back_after, 14s);
  const auto t = reach_options(3s);
  EXPECT_EQ(t.probe_timeout, 750ms);
  EXPECT_EQ(t.give_back_after, 4500ms);
  EXPECT_EQ(reach_options(1s).probe_timeout, 500ms);
  EXPECT_EQ(reach_options(1h).probe_timeout, 2s);
  for (const auto ttl : {1s, 3s, 10s, 60s}) {
    const auto o = reach_options(std::chrono::duration_cast<std::chrono::milliseconds>(ttl));
    EXPECT_GT(o.give_back_after, ttl + o.probe_interval) << ttl.count();
  }
}

// /readyz: not ready before the probe answered once, nor while the brokers do not answer.
TEST(RelayReach, HealthIsReadyOnlyWhileTheBrokersAnswer) {
  Health h("host=db.example user=relay password=secret");
  h.db_connected();
  EXPECT_FALSE(h.snapshot().ready) << "no probe ended yet";
  h.on_kafka({.reachable = false, .give_back = false, .why = {}});
  EXPECT_FALSE(h.snapshot().ready);
  h.on_kafka({.reachable = true, .give_back = false, .why = {}});
  EXPECT_TRUE(h.snapshot().ready);
  EXPECT_NE(h.metrics_text().find("txbox_relay_kafka_reachable 1"), std::string::npos);
  h.on_kafka({.reachable = false, .give_back = false, .why = "no answer within 2000 ms"});
  EXPECT_FALSE(h.snapshot().ready);
  EXPECT_FALSE(h.snapshot().kafka_reachable);
  EXPECT_NE(h.metrics_text().find("txbox_relay_kafka_reachable 0"), std::string::npos);
  h.on_kafka({.reachable = true, .give_back = false, .why = {}});
  EXPECT_TRUE(h.snapshot().ready);
}

// A connection refused for a reason of configuration while running (the database dropped,
// the role's login revoked): not ready, the gauge says so until a pass goes through.
TEST(RelayReach, ARefusedConnectionSetsTheMisconfiguredGaugeUntilAPassSucceeds) {
  Health h("host=db.example user=relay");
  h.db_connected();
  h.on_kafka({.reachable = true, .give_back = false, .why = {}});
  txbox::detail::failure f;
  f.kind = txbox::detail::failure_kind::db_permanent;
  f.reconnect = true;
  f.sqlstate = "3D000";
  f.message = "FATAL:  database \"txbox\" does not exist";
  f.hint = "check the database name in database.url, or create the database";
  h.failed(f, 30s);
  EXPECT_FALSE(h.snapshot().ready);
  EXPECT_TRUE(h.snapshot().database_misconfigured);
  EXPECT_NE(h.metrics_text().find("txbox_relay_database_misconfigured 1"), std::string::npos);
  h.db_connected();
  h.db_ok();
  EXPECT_TRUE(h.snapshot().ready);
  EXPECT_FALSE(h.snapshot().database_misconfigured);
}

}  // namespace
