#include "txbox/validate.hpp"

#include <gtest/gtest.h>

#include <string>

#include "txbox/error.hpp"

namespace {

TEST(TopicName, AcceptsKafkaLegalNames) {
  EXPECT_NO_THROW(txbox::check_topic_name("orders"));
  EXPECT_NO_THROW(txbox::check_topic_name("Orders.v1_eu-west"));
  EXPECT_NO_THROW(txbox::check_topic_name(std::string(249, 'a')));
}

TEST(TopicName, RejectsIllegalNamesSayingWhy) {
  EXPECT_THROW(txbox::check_topic_name(""), txbox::message_rejected);
  EXPECT_THROW(txbox::check_topic_name("."), txbox::message_rejected);
  EXPECT_THROW(txbox::check_topic_name(".."), txbox::message_rejected);
  EXPECT_THROW(txbox::check_topic_name(std::string(250, 'a')), txbox::message_rejected);
  try {
    txbox::check_topic_name("orders; DROP TABLE x");
    FAIL() << "no exception";
  } catch (const txbox::message_rejected& e) {
    EXPECT_NE(std::string(e.what()).find("only ASCII letters"), std::string::npos) << e.what();
  }
  EXPECT_THROW(txbox::check_topic_name("caf\xc3\xa9"), txbox::message_rejected);
}

TEST(SqlIdentifier, AcceptsPlainIdentifiersOnly) {
  EXPECT_NO_THROW(txbox::check_sql_identifier("txbox", "schema"));
  EXPECT_NO_THROW(txbox::check_sql_identifier("_a1", "schema"));
  EXPECT_THROW(txbox::check_sql_identifier("", "schema"), txbox::config_error);
  EXPECT_THROW(txbox::check_sql_identifier("1abc", "schema"), txbox::config_error);
  EXPECT_THROW(txbox::check_sql_identifier("Txbox", "schema"), txbox::config_error);
  EXPECT_THROW(txbox::check_sql_identifier("a\"; DROP SCHEMA x; --", "schema"),
               txbox::config_error);
  EXPECT_THROW(txbox::check_sql_identifier(std::string(64, 'a'), "schema"), txbox::config_error);
  try {
    txbox::check_sql_identifier("bad-name", "outbox schema");
    FAIL() << "no exception";
  } catch (const txbox::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("outbox schema 'bad-name'"), std::string::npos);
  }
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(txbox::is_valid_utf8(""));
  EXPECT_TRUE(txbox::is_valid_utf8("plain ascii"));
  EXPECT_TRUE(txbox::is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_FALSE(txbox::is_valid_utf8("\xff"));
  EXPECT_FALSE(txbox::is_valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(txbox::is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(txbox::is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(txbox::is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(txbox::is_valid_utf8("a\x80z"));            // lone continuation byte
}

}  // namespace
