// The relay's broker generation check (relay/src/broker_version) against the broker the
// harness started: Kafka 4.x or before, as endpoints.env's TXBOX_TEST_KAFKA_VERSION says
// (scripts/servers.sh; TXBOX_TEST_KAFKA_VERSION selects it).
#include <gtest/gtest.h>

#include "broker_version.hpp"
#include "harness.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::BrokerGeneration;
using txbox::test::endpoints;

TEST(RelayBrokerGeneration, DetectsTheGenerationOfTheHarnessBroker) {
  const auto it = endpoints().all.find("TXBOX_TEST_KAFKA_VERSION");
  ASSERT_NE(it, endpoints().all.end())
      << "endpoints.env has no TXBOX_TEST_KAFKA_VERSION: servers started by scripts/servers.sh "
         "record it (a broker you point the tests at: set it in the environment too)";
  const bool kafka4 = !it->second.starts_with("3.") && !it->second.starts_with("2.");
  std::string why;
  const std::stop_source never;
  const auto g = txbox::relay::detect_broker_generation({{"bootstrap.servers", endpoints().kafka}},
                                                        10s, never.get_token(), why);
  EXPECT_EQ(g, kafka4 ? BrokerGeneration::kafka_4_or_later : BrokerGeneration::before_4)
      << "Kafka " << it->second << "; why: " << why;
}

TEST(RelayBrokerGeneration, AnUnreachableBrokerIsUnknownWithinTheTimeout) {
  std::string why;
  const std::stop_source never;
  const auto t0 = std::chrono::steady_clock::now();
  // Port 1 on loopback: refused at once, every time.
  const auto g = txbox::relay::detect_broker_generation({{"bootstrap.servers", "127.0.0.1:1"}},
                                                        1500ms, never.get_token(), why);
  EXPECT_EQ(g, BrokerGeneration::unknown);
  EXPECT_FALSE(why.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "bounded by its timeout";
}

TEST(RelayBrokerGeneration, AStopRequestEndsTheCheckAtOnce) {
  std::string why;
  std::stop_source stop;
  stop.request_stop();
  const auto g = txbox::relay::detect_broker_generation({{"bootstrap.servers", "127.0.0.1:1"}}, 30s,
                                                        stop.get_token(), why);
  EXPECT_EQ(g, BrokerGeneration::unknown);
  EXPECT_EQ(why, "stopped");
}

}  // namespace
