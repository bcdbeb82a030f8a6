// Relay configuration: a struct built in code is checked against the same ranges as the
// TOML loader (the settings table), with the key, the value and the allowed range named.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "txbox/relay.hpp"

namespace {

using namespace std::chrono_literals;

txbox::RelayConfig valid() {
  txbox::RelayConfig c;
  c.database_url = "postgresql:///app";
  c.kafka = {{"bootstrap.servers", "127.0.0.1:9092"}};
  return c;
}

std::string error_of(const txbox::RelayConfig& c) {
  try {
    txbox::validate_relay_config(c);
  } catch (const txbox::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(RelayConfig, AValidStructPasses) {
  EXPECT_NO_THROW(txbox::validate_relay_config(valid()));
}

TEST(RelayConfig, NegativeBatchSizeIsRefused) {
  txbox::RelayConfig c = valid();
  c.batch_size = -1;
  EXPECT_THROW(txbox::validate_relay_config(c), txbox::config_error);
  EXPECT_EQ(error_of(c), "relay.batch_size = -1 is out of range: expected 1..10000");
}

// One struct per range of the relay's settings table: below the minimum, above the maximum.
TEST(RelayConfig, EveryRangeIsCheckedOnAStruct) {
  struct Case {
    const char* key;
    std::function<void(txbox::RelayConfig&)> set;
    const char* message;
  };
  const Case cases[] = {
      {"batch_size 0", [](auto& c) { c.batch_size = 0; },
       "relay.batch_size = 0 is out of range: expected 1..10000"},
      {"batch_size big", [](auto& c) { c.batch_size = 10'001; },
       "relay.batch_size = 10001 is out of range: expected 1..10000"},
      {"max_batch_bytes small", [](auto& c) { c.max_batch_bytes = 1000; },
       "relay.max_batch_bytes = 1000 is out of range: expected 1048576..4294967296"},
      {"max_batch_bytes big", [](auto& c) { c.max_batch_bytes = (1ull << 32) + 1; },
       "relay.max_batch_bytes = 4294967297 is out of range: expected 1048576..4294967296"},
      {"poll_interval 0", [](auto& c) { c.poll_interval = 0ms; },
       "relay.poll_interval_ms = 0 is out of range: expected 10..3600000"},
      {"poll_interval big", [](auto& c) { c.poll_interval = 3'600'001ms; },
       "relay.poll_interval_ms = 3600001 is out of range: expected 10..3600000"},
      {"lease_ttl 5ms", [](auto& c) { c.lease_ttl = 5ms; },
       "relay.lease_ttl_ms = 5 is out of range: expected 1000..3600000"},
      {"lease_ttl big", [](auto& c) { c.lease_ttl = 3'600'001ms; },
       "relay.lease_ttl_ms = 3600001 is out of range: expected 1000..3600000"},
      {"backoff_min 0", [](auto& c) { c.retry_backoff_min = 0ms; },
       "relay.retry_backoff_min_ms = 0 is out of range: expected 1..3600000"},
      {"backoff_max 0",
       [](auto& c) {
         c.retry_backoff_min = 1ms;
         c.retry_backoff_max = 0ms;
       },
       "relay.retry_backoff_max_ms = 0 is out of range: expected 1..86400000"},
      {"backoff_max big", [](auto& c) { c.retry_backoff_max = 86'400'001ms; },
       "relay.retry_backoff_max_ms = 86400001 is out of range: expected 1..86400000"},
  };
  for (const Case& k : cases) {
    txbox::RelayConfig c = valid();
    k.set(c);
    EXPECT_EQ(error_of(c), k.message) << k.key;
  }
}

// The loader keeps its message for text that is not a number in range.
TEST(RelayConfig, LoaderNamesTheKeyOfABadValue) {
  const std::map<std::string, std::string> m = {{"database.url", "postgresql:///app"},
                                                {"kafka.bootstrap.servers", "h:1"},
                                                {"relay.batch_size", "-5"}};
  try {
    (void)txbox::load_relay_config("", m);
    FAIL() << "no exception";
  } catch (const txbox::config_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "config key 'relay.batch_size' = '-5' is invalid: expected a whole number from 1 "
              "to 10000");
  }
}

TEST(RelayConfig, LoadsEveryKeyFromOverrides) {
  const std::map<std::string, std::string> m = {{"database.url", "postgresql:///app"},
                                                {"database.schema", "ob"},
                                                {"kafka.bootstrap.servers", "h:1"},
                                                {"relay.name", "r1"},
                                                {"relay.batch_size", "7"},
                                                {"relay.max_batch_bytes", "2097152"},
                                                {"relay.poll_interval_ms", "50"},
                                                {"relay.lease_ttl_ms", "2000"},
                                                {"relay.listen_notify", "false"},
                                                {"relay.strict_durability", "1"},
                                                {"relay.durability_topics", "a, b"},
                                                {"relay.retry_backoff_min_ms", "3"},
                                                {"relay.retry_backoff_max_ms", "4"},
                                                {"http.listen", "127.0.0.1:9464"}};
  const auto c = txbox::load_relay_config("", m);
  EXPECT_EQ(c.schema, "ob");
  EXPECT_EQ(c.name, "r1");
  EXPECT_EQ(c.batch_size, 7);
  EXPECT_EQ(c.max_batch_bytes, 2097152u);
  EXPECT_EQ(c.poll_interval, 50ms);
  EXPECT_EQ(c.lease_ttl, 2000ms);
  EXPECT_FALSE(c.listen_notify);
  EXPECT_TRUE(c.strict_durability);
  EXPECT_EQ(c.durability_topics, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.retry_backoff_min, 3ms);
  EXPECT_EQ(c.retry_backoff_max, 4ms);
  EXPECT_EQ(c.http_listen, "127.0.0.1:9464");
  EXPECT_EQ(c.kafka.at("bootstrap.servers"), "h:1");
}

// Issue 25: the standbys the phantom guard counts, by application_name; from the file, the
// environment (TXBOX_RELAY_STANDBY_NAMES) or --standby-names (an override, comma-separated).
TEST(RelayConfig, StandbyNamesAreLoadedAndChecked) {
  std::map<std::string, std::string> m = {{"database.url", "postgresql:///app"},
                                          {"kafka.bootstrap.servers", "h:1"},
                                          {"relay.wait_for_standbys", "1"}};
  EXPECT_TRUE(txbox::load_relay_config("", m).standby_names.empty());
  m["relay.standby_names"] = "node1, node2";
  EXPECT_EQ(txbox::load_relay_config("", m).standby_names,
            (std::vector<std::string>{"node1", "node2"}));
  m.erase("relay.standby_names");
  ::setenv("TXBOX_RELAY_STANDBY_NAMES", "node3", 1);
  const auto from_env = txbox::load_relay_config("", m).standby_names;
  ::unsetenv("TXBOX_RELAY_STANDBY_NAMES");
  EXPECT_EQ(from_env, (std::vector<std::string>{"node3"}));

  auto c = valid();
  c.standby_names = {"node1"};
  EXPECT_NE(error_of(c).find("relay.standby_names = node1 is set but relay.wait_for_standbys = "
                             "0"),
            std::string::npos)
      << error_of(c);
  c.wait_for_standbys = 1;
  EXPECT_EQ(error_of(c), "");
  c.standby_names = {std::string(64, 'n')};
  EXPECT_NE(error_of(c).find("is not an application_name PostgreSQL shows (1 to 63 bytes)"),
            std::string::npos)
      << error_of(c);
}

TEST(RelayConfig, DeliveryIsAtLeastOnceUnlessSetToExactlyOnce) {
  std::map<std::string, std::string> m = {{"database.url", "postgresql:///app"},
                                          {"kafka.bootstrap.servers", "h:1"}};
  EXPECT_EQ(txbox::load_relay_config("", m).delivery, txbox::Delivery::at_least_once);
  m["relay.delivery"] = "exactly_once";
  EXPECT_EQ(txbox::load_relay_config("", m).delivery, txbox::Delivery::exactly_once);
  m["relay.delivery"] = "exactly-once";
  try {
    (void)txbox::load_relay_config("", m);
    FAIL() << "a misspelt mode was accepted";
  } catch (const txbox::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("relay.delivery"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("exactly_once"), std::string::npos) << e.what();
  }
}

// The settings exactly_once depends on are refused with the reason; the same ones pass in
// at_least_once mode (where they do not matter to txbox's own reads).
TEST(RelayConfig, ExactlyOnceRefusesSettingsThatBreakIt) {
  auto c = valid();
  c.delivery = txbox::Delivery::exactly_once;
  EXPECT_EQ(error_of(c), "");
  c.kafka["isolation.level"] = "read_uncommitted";
  EXPECT_NE(error_of(c).find("kafka.isolation.level = read_uncommitted is refused"),
            std::string::npos)
      << error_of(c);
  c.kafka.erase("isolation.level");
  c.kafka["transaction.timeout.ms"] = "5000";  // lease ttl 10000
  EXPECT_NE(error_of(c).find("must exceed relay.lease_ttl_ms = 10000"), std::string::npos)
      << error_of(c);
  c.kafka["transaction.timeout.ms"] = "soon";
  EXPECT_NE(error_of(c).find("is not a number"), std::string::npos) << error_of(c);
  c.kafka["transaction.timeout.ms"] = "30000";
  EXPECT_EQ(error_of(c), "");
  c.progress_topic = "bad topic";
  EXPECT_NE(error_of(c).find("relay.progress_topic"), std::string::npos) << error_of(c);
  c.progress_topic.clear();
  c.kafka["transactional.id"] = "mine";
  EXPECT_NE(error_of(c).find("kafka.transactional.id is managed by txbox-relay"), std::string::npos)
      << error_of(c);

  auto alo = valid();
  alo.kafka["transaction.timeout.ms"] = "5000";
  EXPECT_EQ(error_of(alo), "");
}

TEST(RelayConfig, DescribeHidesSecrets) {
  txbox::RelayConfig c = valid();
  c.database_url = "postgresql://u:hunter2@db/app";
  c.kafka["sasl.password"] = "hunter3";
  const std::string d = txbox::describe_relay_config(c);
  EXPECT_EQ(d.find("hunter2"), std::string::npos) << d;
  EXPECT_EQ(d.find("hunter3"), std::string::npos) << d;
  EXPECT_NE(d.find("relay.batch_size = 500\n"), std::string::npos) << d;
  EXPECT_NE(d.find("relay.name = (host:pid)\n"), std::string::npos) << d;
  EXPECT_NE(d.find("http.listen = (off)\n"), std::string::npos) << d;
}

}  // namespace
