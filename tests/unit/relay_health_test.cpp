// The relay's health facade (relay/src/health) and its renderer (relay/src/relay_metrics_text):
// the Prometheus text served for a fixed sequence of events, byte for byte
// (tests/unit/relay_metrics_golden.txt, recorded before Health was split), and that
// `promtool check metrics` accepts it when promtool is installed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "health.hpp"
#include "relay_metrics_text.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

const std::filesystem::path k_golden =
    std::filesystem::path(TXBOX_SOURCE_DIR) / "tests/unit/relay_metrics_golden.txt";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every metric with a value of its own: two topics (one whose name needs escaping in a
// label), a dead row, fenced rows, latencies in several buckets, a held standby round, an
// aborted transaction, a transient and a permanent database failure.
void feed_busy(Health& h) {
  h.db_connected();
  h.on_kafka({.reachable = true, .give_back = false, .why = {}});
  SettlePlan plan;
  plan.delete_ids = {10, 11, 12, 13, 14};
  plan.dead = {{.id = 1, .error = "message too large"}};
  plan.published = {{"orders", 3}, {"pay\"ments\\x", 2}};
  plan.held = {{"audit", 4}};
  plan.ack_latencies = {0.0005, 0.003, 0.2, 7, 45};
  plan.transient = 2;
  plan.first_error = "Local: Message timed out";
  h.on_settle(plan, {.deleted = 4, .dead = 1, .retried = 2});
  LeaseTick tick;
  tick.view.epochs = {{0, 1}, {1, 1}, {2, 3}, {5, 1}, {9, 2}};
  tick.changes = 3;
  h.on_leases(tick);
  h.on_backlog({.rows = 1234, .oldest_seconds = 5.5}, 17);
  h.on_weak_topics({"audit", "orders"});
  h.on_producer_replaced();
  h.on_producer_replaced();
  h.on_late_reports(9);
  h.on_standbys(
      {.pass = false, .lsn = "0/16B3748", .walsenders = {}, .flushed = 1, .waited = 250ms}, 6);
  h.on_transactions(4, 1, {0.002, 0.04}, "Broker: Producer fenced");
  h.on_lanes(2, 7);
  h.on_isr_shortfalls({{.topic = "orders",
                        .partition = 0,
                        .leader = 1,
                        .isr = {1},
                        .min_insync = 2,
                        .replicas = 3}});
  detail::failure lock_timeout;
  lock_timeout.kind = detail::failure_kind::db_transient;
  lock_timeout.sqlstate = "55P03";
  lock_timeout.message = "ERROR:  canceling statement due to lock timeout";
  h.failed(lock_timeout, 100ms);
  detail::failure denied;
  denied.kind = detail::failure_kind::db_permanent;
  denied.sqlstate = "42501";
  denied.message = "ERROR:  permission denied for table outbox";
  h.failed(denied, 30s);
}

std::string busy_metrics_text() {
  Health h("host=db.example user=relay password=secret");
  feed_busy(h);
  return h.metrics_text();
}

TEST(RelayHealth, MetricsTextIsByteIdenticalToTheGolden) {
  const std::string text = busy_metrics_text();
  if (std::getenv("TXBOX_WRITE_GOLDEN") != nullptr) {
    std::ofstream(k_golden, std::ios::binary) << text;
  }
  EXPECT_EQ(text, read_file(k_golden))
      << "to accept a deliberate change: TXBOX_WRITE_GOLDEN=1 and review the diff";
}

// The renderer alone, on the facade's snapshot value: the same golden text.
TEST(RelayHealth, TheRendererOfTheSnapshotGivesTheGolden) {
  Health h("host=db.example user=relay password=secret");
  feed_busy(h);
  EXPECT_EQ(metrics_text(h.snapshot()), read_file(k_golden));
}

TEST(RelayHealth, FreshMetricsTextStartsFromZero) {
  const std::string text = Health("host=db.example").metrics_text();
  EXPECT_NE(text.find("txbox_relay_ready 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("txbox_outbox_backlog_rows 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("txbox_relay_commit_to_ack_seconds_count 0\n"), std::string::npos) << text;
}

// Prometheus parses it as it would scrape it (a counter named *_total, HELP and TYPE before
// the samples, label escaping): the same check tests/monitoring/check.sh runs on a live relay.
TEST(RelayHealth, PromtoolAcceptsTheMetricsText) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not in PATH (scripts/install-deps.sh installs prometheus)";
  }
  for (const std::string& text : {busy_metrics_text(), Health("host=db.example").metrics_text()}) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("txbox-relay-metrics-" + std::to_string(::getpid()) + ".txt");
    std::ofstream(path, std::ios::binary) << text;
    const std::string command = "promtool check metrics < " + path.string() + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << text;
    std::filesystem::remove(path);
  }
}

}  // namespace
}  // namespace txbox::relay
