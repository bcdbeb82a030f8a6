// Consumer configuration: unsafe or malformed settings are refused with a reason.
#include <gtest/gtest.h>

#include <fstream>

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
