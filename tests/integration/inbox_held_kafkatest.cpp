// The inbox when the handler's database user lacks a privilege (issue 30, item 1): the
// permission error is not the message's fault, so nothing is dead-lettered; the partitions are
// held, the consumer is not ready, one log line names the fix, and once the privilege is
// granted every message is applied exactly once. And a topic nobody writes (item 4): the
// "does not exist (yet)" line carries a hint.
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>

#include "inbox_support.hpp"
#include "txbox/outbox.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::test::numbered_ids;
using txbox::test::produce_ids;

// Collects what spdlog's default logger writes while it lives (its other sinks still print).
class log_capture {
 public:
  log_capture() { spdlog::default_logger()->sinks().push_back(m_sink); }
  ~log_capture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), m_sink), sinks.end());
  }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  [[nodiscard]] std::string text() const { return m_sink->text(); }
  // Lines holding `needle`.
  [[nodiscard]] int lines_with(const std::string& needle) const {
    std::istringstream in(text());
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
    return n;
  }

 private:
  class sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::string text() {
      const std::lock_guard lock(mutex_);
      return m_text;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      spdlog::memory_buf_t line;
      formatter_->format(msg, line);
      m_text.append(line.data(), line.size());
    }
    void flush_() override {}

   private:
    std::string m_text;
  };
  std::shared_ptr<sink> m_sink = std::make_shared<sink>();
};

class InboxHeld : public txbox::test::InboxFixture {
 protected:
  // Whether the broker lists `topic` (all topics' metadata: asking for one by name may create
  // it on a broker with auto.create.topics.enable).
  static bool topic_listed(const std::string& topic) {
    char err[512];
    txbox::detail::conf_ptr conf(rd_kafka_conf_new());
    rd_kafka_conf_set(conf.get(), "bootstrap.servers", txbox::test::endpoints().kafka.c_str(), err,
                      sizeof err);
    txbox::detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.release(), err, sizeof err));
    const rd_kafka_metadata_t* md = nullptr;
    EXPECT_EQ(rd_kafka_metadata(rk.get(), 1, nullptr, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    const txbox::detail::metadata_ptr owned(md);
    for (int i = 0; md != nullptr && i < md->topic_cnt; ++i) {
      if (md->topics[i].topic == topic) return true;
    }
    return false;
  }

  static constexpr int total = 6;

  // The consumer logs in as role_; the handler (`handler`) needs a privilege role_ lacks. For
  // a while: nothing dead, nothing applied, not ready, one line with `hint`. Then `grant`:
  // every message applied exactly once, nothing dead, ready again.
  void held_until_granted(const txbox::Handler& handler, const std::string& hint,
                          const std::string& grant) {
    produce_ids(topic_, numbered_ids(total, 2));
    auto cfg = config();
    cfg.database_url = url(true);
    log_capture log;
    txbox::Consumer c(cfg, handler);
    const auto until = std::chrono::steady_clock::now() + 8s;
    poll_until(c, [&] { return std::chrono::steady_clock::now() > until; });
    EXPECT_EQ(dead(), 0) << "a missing privilege dead-lettered good messages\n" << log.text();
    EXPECT_EQ(effects(), 0);
    EXPECT_EQ(c.stats().failures, 0u) << "a missing privilege counted as a handler failure";
    EXPECT_FALSE(c.stats().ready) << "ready while every batch fails on a missing privilege";
    EXPECT_EQ(log.lines_with(hint), 1) << "one line with the fix (" << hint << ")\n" << log.text();
    sql(grant);
    ASSERT_TRUE(poll_until(
        c, [&] { return distinct_effects() >= total; }, 90s))
        << log.text();
    EXPECT_TRUE(poll_until(
        c, [&] { return c.stats().ready; }, 30s))
        << log.text();
    EXPECT_EQ(effects(), total) << "a message took effect twice";
    EXPECT_EQ(dead(), 0) << log.text();
    EXPECT_EQ(c.stats().failures, 0u);
  }
};

// The handler enqueues into the outbox, but its user was granted txbox_consumer only: the fix
// is GRANT txbox_writer.
TEST_F(InboxHeld, OutboxWithoutTxboxWriterIsHeldUntilGranted) {
  const txbox::Outbox outbox(txbox::OutboxConfig{.schema = schema_});
  const auto effect = record_effect();
  const auto handler = [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    outbox.enqueue(tx, {.topic = topic_ + "_out", .key = m.id, .payload = m.payload});
  };
  held_until_granted(handler, "GRANT txbox_writer TO " + role_, "GRANT txbox_writer TO " + role_);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".outbox"), total);
}

// The handler writes the user's own table, on which its user lacks INSERT.
TEST_F(InboxHeld, OwnTableWithoutPrivilegeIsHeldUntilGranted) {
  sql("REVOKE INSERT ON " + schema_ + ".effects FROM " + role_);
  held_until_granted(record_effect(), "ON effects TO " + role_,
                     "GRANT INSERT ON " + schema_ + ".effects TO " + role_);
}

// Subscribed to a topic that does not exist: the line says what to check.
TEST_F(InboxHeld, MissingTopicLineCarriesAHint) {
  auto cfg = config();
  cfg.topics = {txbox::test::unique_name("nobody_writes")};
  log_capture log;
  txbox::Consumer c(cfg, record_effect());
  EXPECT_TRUE(poll_until(
      c, [&] { return log.lines_with("does not exist (yet)") > 0; }, 30s))
      << log.text();
  EXPECT_EQ(log.lines_with("txboxctl status"), 1) << log.text();
  EXPECT_EQ(log.lines_with("same topic name"), 1) << log.text();
}

// 30 s later the line comes again (librdkafka says it once), and the consumer's own metadata
// request for the topic has not made the broker create it (the test broker creates topics on
// first use). About 35 s.
TEST_F(InboxHeld, MissingTopicIsSaidAgainAndNotCreated) {
  const std::string missing = txbox::test::unique_name("nobody_writes");
  auto cfg = config();
  cfg.topics = {missing};
  log_capture log;
  txbox::Consumer c(cfg, record_effect());
  EXPECT_TRUE(poll_until(
      c, [&] { return log.lines_with("still does not exist after 30 s") > 0; }, 45s))
      << log.text();
  EXPECT_EQ(log.lines_with("txboxctl status"), 2) << log.text();
  EXPECT_FALSE(topic_listed(missing)) << "the reminder's metadata request created the topic";
}

}  // namespace
