// Consumer configuration: unsafe or malformed settings are refused with a reason.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>

#include "txbox/inbox.hpp"

namespace {

std::map<std::string, std::string> base() {
  return {{"consumer.name", "projector"},
          {"consumer.topics", "orders, payments"},
          {"database.url", "postgresql:///app"},
          {"kafka.bootstrap.servers", "127.0.0.1:9092"}};
}

std::string error_of(const std::map<std::string, std::string>& overrides) {
  try {
    (void)txbox::load_consumer_config("", overrides);
  } catch (const txbox::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(InboxConfig, ReadsKeysAndLists) {
  auto m = base();
  m["consumer.on_failure"] = "block";
  m["consumer.start_from"] = "latest";
  m["consumer.max_batch"] = "50";
  const auto c = txbox::load_consumer_config("", m);
  EXPECT_EQ(c.topics, (std::vector<std::string>{"orders", "payments"}));
  EXPECT_EQ(c.on_failure, txbox::FailurePolicy::block);
  EXPECT_FALSE(c.start_from_earliest);
  EXPECT_EQ(c.max_batch, 50);
  EXPECT_EQ(c.kafka.at("bootstrap.servers"), "127.0.0.1:9092");
}

TEST(InboxConfig, ReadsTomlWithATopicArray) {
  const std::string path = testing::TempDir() + "inbox.toml";
  std::ofstream(path) << "[database]\nurl = \"postgresql:///app\"\n[consumer]\nname = \"p\"\n"
                         "topics = [\"a\", \"b\"]\nmax_attempts = 7\n[kafka]\n"
                         "\"bootstrap.servers\" = \"h:1\"\n";
  const auto c = txbox::load_consumer_config(path);
  EXPECT_EQ(c.topics, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.max_attempts, 7);
}

TEST(InboxConfig, AutoCommitIsRefusedWithTheReason) {
  auto m = base();
  m["kafka.enable.auto.commit"] = "true";
  const auto e = error_of(m);
  EXPECT_NE(e.find("enable.auto.commit"), std::string::npos) << e;
  EXPECT_NE(e.find("PostgreSQL"), std::string::npos) << e;
}

// The inbox reads only committed transactions (an exactly_once relay's aborted ones stay out).
TEST(InboxConfig, ReadUncommittedIsRefusedWithTheReason) {
  auto m = base();
  m["kafka.isolation.level"] = "read_uncommitted";
  const auto e = error_of(m);
  EXPECT_NE(e.find("kafka.isolation.level = read_uncommitted is refused"), std::string::npos) << e;
  m["kafka.isolation.level"] = "read_committed";
  EXPECT_EQ(error_of(m), "");
}

TEST(InboxConfig, BadInputIsNamed) {
  auto m = base();
  m["consumer.max_batch"] = "lots";
  EXPECT_NE(error_of(m).find("consumer.max_batch"), std::string::npos);
  m = base();
  m["consumer.on_failure"] = "ignore";
  EXPECT_NE(error_of(m).find("dead_letter or block"), std::string::npos);
  m = base();
  m["consumer.topic"] = "typo";
  EXPECT_NE(error_of(m).find("unknown config key 'consumer.topic'"), std::string::npos);
  m = base();
  m.erase("consumer.name");
  EXPECT_NE(error_of(m).find("consumer.name is not set"), std::string::npos);
  m = base();
  m["consumer.topics"] = "bad topic!";
  EXPECT_NE(error_of(m).find("consumer.topics"), std::string::npos);
  m = base();
  m["database.schema"] = "Robert'); DROP";
  EXPECT_NE(error_of(m).find("database.schema"), std::string::npos);
  m = base();
  m["kafka.auto.offset.reset"] = "earliest";
  EXPECT_NE(error_of(m).find("consumer.start_from"), std::string::npos);
}

// Found by fuzz/config_fuzz.cpp: an unterminated string of non-UTF-8 bytes made toml11 read
// past its buffer. Such a file is refused before it reaches the parser.
TEST(InboxConfig, AFileThatIsNotUtf8IsRefused) {
  const std::string path = testing::TempDir() + "not_utf8.toml";
  std::ofstream(path) << "[consumer]\nname = '\xff\xff\xff";
  try {
    (void)txbox::load_consumer_config(path);
    FAIL() << "expected config_error";
  } catch (const txbox::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("not UTF-8"), std::string::npos) << e.what();
  }
}

}  // namespace

namespace {

using namespace std::chrono_literals;

txbox::ConsumerConfig valid_consumer() {
  txbox::ConsumerConfig c;
  c.name = "projector";
  c.topics = {"orders"};
  c.database_url = "postgresql:///app";
  c.kafka = {{"bootstrap.servers", "127.0.0.1:9092"}};
  return c;
}

std::string struct_error_of(const txbox::ConsumerConfig& c) {
  try {
    txbox::validate_consumer_config(c);
  } catch (const txbox::config_error& e) {
    return e.what();
  }
  return "";
}

// A struct built in code is checked against the same ranges as the loader (the settings
// table), naming the key, the value and the allowed range.
TEST(InboxConfig, EveryRangeIsCheckedOnAStruct) {
  EXPECT_EQ(struct_error_of(valid_consumer()), "");
  struct Case {
    const char* what;
    std::function<void(txbox::ConsumerConfig&)> set;
    const char* message;
  };
  const Case cases[] = {
      {"max_batch 0", [](auto& c) { c.max_batch = 0; },
       "consumer.max_batch = 0 is out of range: expected 1..10000"},
      {"max_batch big", [](auto& c) { c.max_batch = 10'001; },
       "consumer.max_batch = 10001 is out of range: expected 1..10000"},
      {"batch_wait -5", [](auto& c) { c.batch_wait = -5ms; },
       "consumer.batch_wait_ms = -5 is out of range: expected 0..60000"},
      {"batch_wait big", [](auto& c) { c.batch_wait = 60'001ms; },
       "consumer.batch_wait_ms = 60001 is out of range: expected 0..60000"},
      {"max_attempts 0", [](auto& c) { c.max_attempts = 0; },
       "consumer.max_attempts = 0 is out of range: expected 1..1000"},
      {"max_attempts big", [](auto& c) { c.max_attempts = 1001; },
       "consumer.max_attempts = 1001 is out of range: expected 1..1000"},
      {"backoff_min 0", [](auto& c) { c.retry_backoff_min = 0ms; },
       "consumer.retry_backoff_min_ms = 0 is out of range: expected 1..3600000"},
      {"backoff_max big", [](auto& c) { c.retry_backoff_max = 86'400'001ms; },
       "consumer.retry_backoff_max_ms = 86400001 is out of range: expected 1..86400000"},
      {"retention 0", [](auto& c) { c.retention = 0h; },
       "consumer.retention_hours = 0 is out of range: expected 1..87600"},
      {"retention big", [](auto& c) { c.retention = 87'601h; },
       "consumer.retention_hours = 87601 is out of range: expected 1..87600"},
      {"cleanup_interval 0", [](auto& c) { c.cleanup_interval = 0ms; },
       "consumer.cleanup_interval_ms = 0 is out of range: expected 1000..86400000"},
      {"cleanup_interval big", [](auto& c) { c.cleanup_interval = 86'400'001ms; },
       "consumer.cleanup_interval_ms = 86400001 is out of range: expected 1000..86400000"},
      {"requeue_interval 0", [](auto& c) { c.requeue_interval = 0ms; },
       "consumer.requeue_interval_ms = 0 is out of range: expected 100..3600000"},
      {"requeue_interval big", [](auto& c) { c.requeue_interval = 3'600'001ms; },
       "consumer.requeue_interval_ms = 3600001 is out of range: expected 100..3600000"},
  };
  for (const Case& k : cases) {
    txbox::ConsumerConfig c = valid_consumer();
    k.set(c);
    EXPECT_EQ(struct_error_of(c), k.message) << k.what;
  }
}

}  // namespace
