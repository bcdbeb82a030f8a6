// The relay's old-librdkafka-on-Kafka-4 decision (relay/src/broker_version): the broker's
// generation from its configuration's names, and the librdkafka versions that earn the warning.
#include <gtest/gtest.h>

#include "broker_version.hpp"

namespace {

using txbox::relay::broker_generation;
using txbox::relay::BrokerGeneration;
using txbox::relay::old_client_on_kafka4;

// rd_kafka_version()'s encoding of a release (pre-release byte 0xff).
constexpr int release(int major, int minor, int revision) {
  return (major << 24) | (minor << 16) | (revision << 8) | 0xff;
}

TEST(RelayBrokerVersion, ConfigsRemovedInKafka4TellTheGeneration) {
  // Kafka 3.9 (KRaft) lists them all; a 3.x broker on ZooKeeper too.
  EXPECT_EQ(broker_generation({"num.partitions", "inter.broker.protocol.version",
                               "log.message.format.version", "zookeeper.connect"}),
            BrokerGeneration::before_4);
  EXPECT_EQ(broker_generation({"num.partitions", "log.message.format.version"}),
            BrokerGeneration::before_4)
      << "any one of them is enough";
  EXPECT_EQ(broker_generation({"num.partitions", "log.dirs", "group.share.max.share.sessions"}),
            BrokerGeneration::kafka_4_or_later);
}

TEST(RelayBrokerVersion, APartialAnswerIsUnknown) {
  EXPECT_EQ(broker_generation({}), BrokerGeneration::unknown);
  EXPECT_EQ(broker_generation({"log.dirs"}), BrokerGeneration::unknown)
      << "without num.partitions the list is not a broker's whole configuration";
}

TEST(RelayBrokerVersion, WarnsBelow2_11_1OnKafka4Only) {
  const auto k4 = BrokerGeneration::kafka_4_or_later;
  EXPECT_TRUE(old_client_on_kafka4(release(2, 0, 2), k4));   // Debian 12
  EXPECT_TRUE(old_client_on_kafka4(release(2, 8, 0), k4));   // Debian 13
  EXPECT_TRUE(old_client_on_kafka4(release(2, 11, 0), k4));  // GSSAPI fixed, checks not yet
  EXPECT_FALSE(old_client_on_kafka4(release(2, 11, 1), k4));
  EXPECT_FALSE(old_client_on_kafka4(release(2, 12, 1), k4));
  EXPECT_FALSE(old_client_on_kafka4(release(3, 0, 0), k4));
  EXPECT_FALSE(old_client_on_kafka4(0x020b0101, k4)) << "2.11.1-RC1 counts as 2.11.1";
  EXPECT_TRUE(old_client_on_kafka4(0x020b00ff, k4)) << "2.11.0";
}

TEST(RelayBrokerVersion, NoWarningWithoutAKafka4Broker) {
  for (const auto g : {BrokerGeneration::before_4, BrokerGeneration::unknown}) {
    EXPECT_FALSE(old_client_on_kafka4(release(2, 0, 2), g));
  }
}

TEST(RelayBrokerVersion, TheWarningNamesTheVersionsAndTheFix) {
  const auto w = txbox::relay::old_client_warning("2.0.2");
  for (const char* part : {"librdkafka 2.0.2", "Kafka 4", "2.11.1", "GSSAPI", "compression"}) {
    EXPECT_NE(w.find(part), std::string::npos) << part << " missing from: " << w;
  }
}

TEST(RelayBrokerVersion, ClientVersionsNameBothLibraries) {
  const auto v = txbox::relay::client_versions();
  EXPECT_EQ(v.rfind("librdkafka ", 0), 0U) << v;
  EXPECT_NE(v.find(", libpqxx "), std::string::npos) << v;
}

}  // namespace
