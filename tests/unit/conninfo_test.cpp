#include "txbox/conninfo.hpp"
#include "txbox/error.hpp"

#include <gtest/gtest.h>

namespace {

constexpr const char* k_secret = "S3cr3t-p4ss";

TEST(RedactConninfo, HidesKeywordPasswords) {
  const auto out = txbox::redact_conninfo("host=db port=5432 password=S3cr3t-p4ss user=app");
  EXPECT_EQ(out, "host=db port=5432 password=*** user=app");
  EXPECT_EQ(txbox::redact_conninfo("password = 'S3cr3t-p4ss with space' dbname=x"),
            "password = *** dbname=x");
  EXPECT_EQ(txbox::redact_conninfo("password='it\\'s S3cr3t-p4ss'"), "password=***");
}

TEST(RedactConninfo, HidesUriPasswords) {
  EXPECT_EQ(txbox::redact_conninfo("postgresql://app:S3cr3t-p4ss@db:5432/orders"),
            "postgresql://app:***@db:5432/orders");
  EXPECT_EQ(txbox::redact_conninfo("postgres://app@db/orders?password=S3cr3t-p4ss&sslmode=require"),
            "postgres://app@db/orders?password=***&sslmode=require");
  EXPECT_EQ(txbox::redact_conninfo("postgresql://db/orders"), "postgresql://db/orders");
}

TEST(RedactConninfo, NeverReturnsTheSecret) {
  for (const std::string s : {"password=S3cr3t-p4ss", "postgresql://u:S3cr3t-p4ss@h/d",
                              "postgresql://u@h/d?password=S3cr3t-p4ss",
                              "host=h  password=S3cr3t-p4ss", "password=S3cr3t-p4ss\\ x"}) {
    EXPECT_EQ(txbox::redact_conninfo(s).find(k_secret), std::string::npos) << s;
  }
}

// Malformed strings that libpq refuses still end up in error messages: found by
// fuzz/conninfo_fuzz.cpp, each hid a password from the first redaction.
TEST(RedactConninfo, HidesPasswordsInMalformedStrings) {
  for (const std::string s : {
           "postgresql://u:pw@h:5432/db?sslmode=require password=S3cr3t-p4ss",  // URI + keyword
           "postgresql://u:pw@h:5432gresql://u:pw@quire password=S3cr3t-p4ss",  // path swallows
           "postgresql://h/db?pass%77ord=S3cr3t-p4ss",                          // encoded key
           "host=h application_name=a\\ password=S3cr3t-p4ss",                  // escaped space
           "host=h sslmode='require password=S3cr3t-p4ss",                      // open quote
       }) {
    EXPECT_EQ(txbox::redact_conninfo(s).find(k_secret), std::string::npos) << s;
  }
  // What is not secret stays readable.
  EXPECT_EQ(txbox::redact_conninfo("postgresql://app@db:5432/orders?sslmode=require"),
            "postgresql://app@db:5432/orders?sslmode=require");
}

TEST(SecretKeys, AreRecognised) {
  EXPECT_TRUE(txbox::is_secret_key("sasl.password"));
  EXPECT_TRUE(txbox::is_secret_key("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(txbox::is_secret_key("ssl.key.password"));
  EXPECT_TRUE(txbox::is_secret_key("PASSWORD"));
  EXPECT_FALSE(txbox::is_secret_key("bootstrap.servers"));
  EXPECT_FALSE(txbox::is_secret_key("acks"));
}

TEST(CheckConninfo, RefusesWhatLibpqCannotParseWithoutThePassword) {
  for (const std::string& s : {"postgresql://u:" + std::string(k_secret) + "@[::1/db",
                               "host=h password=" + std::string(k_secret) + " 'open",
                               "not a conninfo password=" + std::string(k_secret)}) {
    try {
      txbox::check_conninfo(s, "database.url");
      ADD_FAILURE() << "accepted: " << s;
    } catch (const txbox::config_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("database.url is not a valid connection string"), std::string::npos)
          << what;
      EXPECT_EQ(what.find(k_secret), std::string::npos) << what;
    }
  }
  EXPECT_NO_THROW(txbox::check_conninfo("postgresql://app@db:5432/orders", "database.url"));
  EXPECT_NO_THROW(txbox::check_conninfo("host=db dbname=orders sslmode=verify-full", "x"));
}

TEST(LibpqErrorText, IsOneLineAndHidesTheConnectionsPassword) {
  const std::string url = "host=db password=" + std::string(k_secret);
  const std::string text =
      txbox::libpq_error_text("connection to server failed: password authentication failed, sent " +
                                  std::string(k_secret) + "\n",
                              url);
  EXPECT_EQ(text.find(k_secret), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  EXPECT_EQ(txbox::libpq_error_text("a\nb.\n", ""), "a b");
}

}  // namespace
