// The settings tables: one row per key drives load, validate, describe and the docs' table.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "consumer_settings.hpp"
#include "relay_settings.hpp"
#include "txbox/detail/settings.hpp"
#include "txbox/error.hpp"

namespace {

using namespace std::chrono_literals;
namespace d = txbox::detail;

struct Sample {
  std::string name = "n";
  int count = 3;
  std::chrono::milliseconds wait{250};
  std::size_t bytes = 2048;
  bool on = true;
  std::vector<std::string> items;
};

const std::vector<d::setting<Sample>>& sample_table() {
  static const std::vector<d::setting<Sample>> t = {
      d::text<Sample>("s.name", &Sample::name, "a name"),
      d::number<Sample>("s.count", &Sample::count, 1, 10, "a count"),
      d::number<Sample>("s.wait_ms", &Sample::wait, 0, 1000, "a wait"),
      d::number<Sample>("s.bytes", &Sample::bytes, 1024, 4096, "bytes"),
      d::flag<Sample>("s.on", &Sample::on, "a flag"),
      d::list<Sample>("s.items", &Sample::items, "names"),
  };
  return t;
}

TEST(Settings, EnvironmentNameOfAKey) {
  EXPECT_EQ(d::env_name("relay.batch_size"), "TXBOX_RELAY_BATCH_SIZE");
  EXPECT_EQ(d::env_name("database.url"), "TXBOX_DATABASE_URL");
}

TEST(Settings, LoadReadsEachKindAndKeepsAbsentKeys) {
  Sample s;
  d::load_settings(sample_table(),
                   {{"s.count", "7"}, {"s.wait_ms", "0"}, {"s.on", "0"}, {"s.items", "a, b,"}}, s);
  EXPECT_EQ(s.name, "n");
  EXPECT_EQ(s.count, 7);
  EXPECT_EQ(s.wait, 0ms);
  EXPECT_EQ(s.bytes, 2048u);
  EXPECT_FALSE(s.on);
  EXPECT_EQ(s.items, (std::vector<std::string>{"a", "b"}));
}

TEST(Settings, LoadRefusesTextOutOfRangeNamingTheKey) {
  Sample s;
  try {
    d::load_settings(sample_table(), {{"s.count", "11"}}, s);
    FAIL() << "no exception";
  } catch (const txbox::config_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "config key 's.count' = '11' is invalid: expected a whole number from 1 to 10");
  }
  EXPECT_THROW(d::load_settings(sample_table(), {{"s.on", "yes"}}, s), txbox::config_error);
}

TEST(Settings, RangesOfAStructAreChecked) {
  Sample s;
  EXPECT_NO_THROW(d::check_setting_ranges(sample_table(), s));
  s.bytes = 5000;
  try {
    d::check_setting_ranges(sample_table(), s);
    FAIL() << "no exception";
  } catch (const txbox::config_error& e) {
    EXPECT_EQ(std::string(e.what()), "s.bytes = 5000 is out of range: expected 1024..4096");
  }
  s.bytes = 2048;
  s.wait = -1ms;
  EXPECT_THROW(d::check_setting_ranges(sample_table(), s), txbox::config_error);
}

TEST(Settings, ChoicesNameTheAllowedWords) {
  EXPECT_NO_THROW(d::check_choice("k", "b", {"a", "b"}));
  try {
    d::check_choice("consumer.on_failure", "ignore", {"dead_letter", "block"});
    FAIL() << "no exception";
  } catch (const txbox::config_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "consumer.on_failure = 'ignore' is invalid: expected dead_letter or block");
  }
}

TEST(Settings, DescribeAndMarkdownComeFromTheTable) {
  Sample s;
  s.items = {"x", "y"};
  EXPECT_EQ(d::describe_settings(sample_table(), s),
            "s.name = n\ns.count = 3\ns.wait_ms = 250\ns.bytes = 2048\ns.on = true\n"
            "s.items = [x, y]\n");
  const std::string md = d::settings_markdown(sample_table());
  EXPECT_NE(md.find("| `s.count` | `TXBOX_S_COUNT` | `3` | 1..10 | a count |\n"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| `s.on` | `TXBOX_S_ON` | `true` | true \\| false | a flag |\n"),
            std::string::npos)
      << md;
}

TEST(Settings, RelayTableHasEveryKeyWithItsDefault) {
  const auto keys = d::setting_keys(d::relay_settings());
  EXPECT_EQ(keys.size(), 18u);
  const std::string md = d::relay_settings_markdown();
  EXPECT_NE(md.find("| `relay.delivery` | `TXBOX_RELAY_DELIVERY` | `at_least_once` |"),
            std::string::npos)
      << md;
  EXPECT_NE(
      md.find("| `relay.wait_for_standbys` | `TXBOX_RELAY_WAIT_FOR_STANDBYS` | `0` | 0..32 |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| `relay.batch_size` | `TXBOX_RELAY_BATCH_SIZE` | `500` | 1..10000 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| `relay.max_batch_bytes` | `TXBOX_RELAY_MAX_BATCH_BYTES` | `33554432` | "
                    "1048576..4294967296 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| `http.listen` | `TXBOX_HTTP_LISTEN` | `(off)` |"), std::string::npos) << md;
}

TEST(Settings, ConsumerTableHasEveryKeyWithItsDefault) {
  const auto keys = d::setting_keys(d::consumer_settings());
  EXPECT_EQ(keys.size(), 14u);
  const std::string md = d::consumer_settings_markdown();
  EXPECT_NE(md.find("| `consumer.start_from` | `TXBOX_CONSUMER_START_FROM` | `earliest` | "
                    "earliest \\| latest |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| `consumer.retention_hours` | `TXBOX_CONSUMER_RETENTION_HOURS` | `168` | "
                    "1..87600 |"),
            std::string::npos)
      << md;
}

TEST(Settings, DescribeConsumerHidesSecrets) {
  txbox::ConsumerConfig c;
  c.database_url = "postgresql://u:hunter2@db/app";
  c.kafka["sasl.password"] = "hunter3";
  const std::string text = d::describe_consumer_config(c);
  EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
  EXPECT_EQ(text.find("hunter3"), std::string::npos) << text;
  EXPECT_NE(text.find("consumer.on_failure = dead_letter\n"), std::string::npos) << text;
}

std::string read_doc(const std::string& name) {
  std::ifstream in(std::string(TXBOX_SOURCE_DIR) + "/docs/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The docs hold the generated tables; regenerate them from this test's output when a setting
// changes.
TEST(Settings, DocsHoldTheGeneratedTables) {
  const std::string relay = d::relay_settings_markdown();
  EXPECT_NE(read_doc("operations.md").find(relay), std::string::npos)
      << "docs/operations.md lacks the relay settings table:\n"
      << relay;
  const std::string consumer = d::consumer_settings_markdown();
  EXPECT_NE(read_doc("inbox.md").find(consumer), std::string::npos)
      << "docs/inbox.md lacks the consumer settings table:\n"
      << consumer;
}

}  // namespace
