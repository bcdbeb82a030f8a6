// The RelayTest fixture: txbox-relay as operators run it, as processes against the real
// broker and database. Shared by relay_kafkatest.cpp and relay_operations_kafkatest.cpp.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "relay_support.hpp"
#include "stale_copies.hpp"
#include "txbox/outbox.hpp"

namespace txbox::test {

using namespace std::chrono_literals;

// Every record of `topic`, duplicates included. Call it once the outbox is drained: every
// row was acknowledged, so the high watermarks cover every message.
inline std::vector<Record> read_whole_topic(const std::string& topic) {
  const std::size_t n = topic_size(topic);
  auto records = txbox::test::read_topic(topic, n, 60s);
  EXPECT_EQ(records.size(), n) << "could not read back the whole topic " << topic;
  return records;
}

/// One test's schema and 6-partition topic, its relays as processes, and the checks of what
/// reached Kafka.
class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("rl");
    topic_ = txbox::test::unique_name("relay_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 6);
  }

  // A TOML config for this test's schema; `extra` is appended (more keys or sections).
  std::string config(const std::string& extra = "", const std::string& url = "",
                     const std::string& kafka_extra = "") {
    const std::string path = "/tmp/" + txbox::test::unique_name("relay") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << (url.empty() ? endpoints().pg : url) << "\"\nschema = \""
      << schema_ << "\"\n[relay]\nlease_ttl_ms = " << lease_ttl_ms_ << "\npoll_interval_ms = 200\n"
      << extra << "\n[kafka]\n\"bootstrap.servers\" = \""
      << (bootstrap_.empty() ? endpoints().kafka : bootstrap_) << "\"\n"
      << kafka_extra;
    return path;
  }

  std::unique_ptr<Process> start_relay(const std::string& name, const std::string& cfg,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {txbox::test::program("txbox-relay"), "--config", cfg, "--name",
                                     name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, "/tmp/" + txbox::test::unique_name(name) + ".log");
  }

  // Enqueues `count` messages over `keys` keys; payload "key/seq"; `per_tx` per transaction.
  void enqueue(int count, int keys, int per_tx, int first_seq = 0) {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    for (int i = 0; i < count; i += per_tx) {
      std::vector<txbox::Message> batch;
      for (int j = i; j < std::min(count, i + per_tx); ++j) {
        const int seq = first_seq + j;
        const std::string key = "key-" + std::to_string(seq % keys);
        batch.push_back(
            {.topic = topic_, .key = key, .payload = key + "/" + std::to_string(seq / keys)});
      }
      pqxx::work tx(c);
      ob.enqueue(tx, batch);
      tx.commit();
    }
  }

  long pending() { return txbox::test::outbox_rows(schema_); }

  bool wait_drained(std::chrono::seconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (pending() == 0) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Every message arrived; per key, first arrivals are in order; any duplicate is an exact
  // re-send (same ce_id, same payload); no stale copy (an older message of a key after a newer
  // one, leaving the key behind: stale_copies.hpp) unless `stale_allowed` (a relay stalled
  // past its lease: Kafka cannot fence a non-transactional producer's earlier hand-overs).
  // Returns the number of duplicates; stale_ holds the stale copies.
  int check_stream(const std::vector<txbox::test::Record>& records, int expected,
                   bool stale_allowed = false) {
    std::map<std::string, std::string> payload_by_id;
    std::map<std::string, int> last_seq;
    txbox::test::StaleCopies stale;
    int dups = 0;
    std::int64_t at = 0;
    for (const auto& r : records) {
      const auto id = r.headers.at("ce_id");
      const auto slash = r.value.find('/');
      const int seq = std::stoi(r.value.substr(slash + 1));
      stale.add(r.key, seq, at++);
      auto [it, fresh] = payload_by_id.emplace(id, r.value);
      if (!fresh) {
        EXPECT_EQ(it->second, r.value) << "a duplicate of " << id << " differs";
        ++dups;
        continue;
      }
      EXPECT_EQ(r.key, r.value.substr(0, slash));
      auto [ls, first] = last_seq.try_emplace(r.key, -1);
      EXPECT_EQ(seq, ls->second + 1) << "key " << r.key << " out of order or missing";
      ls->second = seq;
    }
    EXPECT_EQ(payload_by_id.size(), static_cast<std::size_t>(expected));
    stale_ = stale.copies();
    for (const auto& e : stale.episodes()) {
      EXPECT_TRUE(stale_allowed) << "stale copies: key " << e.key << " seq " << e.seq << " (record "
                                 << e.at << ", " << e.copies << " older message(s)) after seq "
                                 << e.newest << " (record " << e.newest_at << ")";
    }
    return dups;
  }

  std::string schema_;
  std::string topic_;
  int lease_ttl_ms_ = 3000;
  std::string bootstrap_;  // Kafka for config(); empty: the test broker
  int stale_ = 0;          // the stale copies the last check_stream saw
};

}  // namespace txbox::test
