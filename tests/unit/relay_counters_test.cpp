// The relay's counters (relay/src/relay_counters) and its Prometheus renderer
// (relay/src/relay_metrics_text), each alone: what a report adds, and the text of a value.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "relay_counters.hpp"
#include "relay_metrics_text.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

TEST(RelayCounters, StartAtZeroWithTheLatencyBuckets) {
  const RelayCounters c;
  const RelayStats& st = c.stats();
  EXPECT_EQ(st.backlog_rows, -1) << "unknown until the first backlog report";
  ASSERT_EQ(st.ack_latency_buckets.size(), 14u);
  EXPECT_EQ(st.ack_latency_buckets.front(), 0.001);
  EXPECT_EQ(st.ack_latency_buckets.back(), 30);
  EXPECT_EQ(st.commit_seconds_buckets, st.ack_latency_buckets);
  EXPECT_EQ(st.ack_latency_counts, std::vector<std::uint64_t>(14, 0));
  EXPECT_EQ(st.commit_seconds_counts, std::vector<std::uint64_t>(14, 0));
}

TEST(RelayCounters, ASettleAddsItsRowsLatenciesAndFencedRows) {
  RelayCounters c;
  SettlePlan plan;
  plan.delete_ids = {1, 2, 3};
  plan.published = {{"orders", 3}};
  plan.held = {{"audit", 2}};
  plan.transient = 1;
  plan.ack_latencies = {0.0005, 0.02, 100};
  c.on_settle(plan, {.deleted = 2, .dead = 1, .retried = 0});
  c.on_settle(plan, {.deleted = 3, .dead = 0, .retried = 0});
  const RelayStats& st = c.stats();
  EXPECT_EQ(st.published_by_topic.at("orders"), 6u);
  EXPECT_EQ(st.held_by_topic.at("audit"), 4u);
  EXPECT_EQ(st.dead, 1u);
  EXPECT_EQ(st.failed, 2u);
  EXPECT_EQ(st.fenced_rows, 1u) << "acknowledged, not deleted: another relay took the shard";
  EXPECT_EQ(st.ack_latency_count, 6u);
  EXPECT_DOUBLE_EQ(st.ack_latency_sum, 2 * 100.0205);
  EXPECT_EQ(st.ack_latency_counts[0], 2u) << "<= 1 ms";
  EXPECT_EQ(st.ack_latency_counts[4], 4u) << "<= 25 ms, cumulative";
  EXPECT_EQ(st.ack_latency_counts.back(), 4u) << "100 s is above every bound";
}

TEST(RelayCounters, GaugesTakeTheLastReportCountersAdd) {
  RelayCounters c;
  LeaseTick tick;
  tick.view.epochs = {{0, 1}, {1, 1}};
  tick.changes = 2;
  c.on_leases(tick);
  c.on_leases(tick);
  c.on_backlog({.rows = 10, .oldest_seconds = 1.5}, 3);
  c.on_backlog({.rows = 7, .oldest_seconds = 0.5}, 1);
  c.on_weak_topics({"a", "b"});
  c.on_weak_topics({"b"});
  c.on_producer_replaced();
  c.on_late_reports(5);
  c.on_late_reports(8);
  c.on_lanes(2, 3);
  c.on_lanes(1, 4);
  const RelayStats& st = c.stats();
  EXPECT_EQ(st.lease_changes, 4u);
  EXPECT_EQ(st.shards_owned, 2u);
  EXPECT_EQ(st.backlog_rows, 7);
  EXPECT_EQ(st.oldest_pending_seconds, 0.5);
  EXPECT_EQ(st.producer_queue, 1);
  EXPECT_EQ(st.weak_topics, std::set<std::string>{"b"});
  EXPECT_EQ(st.producer_restarts, 1u);
  EXPECT_EQ(st.late_reports, 8u) << "a total, not an increment";
  EXPECT_EQ(st.lanes_owned, 1u);
  EXPECT_EQ(st.recovered_rows, 7u);
}

TEST(RelayCounters, StandbyHoldsAndTransactions) {
  RelayCounters c;
  c.on_standbys({.pass = false, .lsn = "0/1", .walsenders = {}, .flushed = 0, .waited = 2s}, 9);
  EXPECT_EQ(c.stats().standby_held_rows, 9u);
  c.on_standbys({.pass = true, .lsn = "0/2", .walsenders = {}, .flushed = 2, .waited = 500ms}, 9);
  EXPECT_EQ(c.stats().standby_held_rows, 0u);
  EXPECT_EQ(c.stats().standbys_flushed, 2u);
  EXPECT_EQ(c.stats().standby_holds, 1u);
  EXPECT_DOUBLE_EQ(c.stats().standby_wait_seconds, 2.5);
  c.on_transactions(3, 1, {0.002, 0.3});
  c.on_transactions(1, 0, {0.004});
  EXPECT_EQ(c.stats().transactions_committed, 4u);
  EXPECT_EQ(c.stats().transactions_aborted, 1u);
  EXPECT_EQ(c.stats().commit_count, 3u);
  EXPECT_DOUBLE_EQ(c.stats().commit_seconds_sum, 0.306);
  EXPECT_EQ(c.stats().commit_seconds_counts[1], 1u) << "<= 2.5 ms";
  EXPECT_EQ(c.stats().commit_seconds_counts[2], 2u) << "<= 5 ms";
}

TEST(RelayCounters, OnlyDatabaseFailuresAreCountedAsSuch) {
  RelayCounters c;
  for (const auto kind : {detail::failure_kind::db_transient, detail::failure_kind::db_permanent,
                          detail::failure_kind::kafka_transient, detail::failure_kind::kafka_fatal,
                          detail::failure_kind::bug}) {
    c.on_failure(kind);
  }
  EXPECT_EQ(c.stats().database_failures, 3u);
}

TEST(RelayMetricsText, RendersAValue) {
  RelayStats st;
  st.published_by_topic = {{"a\"b", 2}};
  st.backlog_rows = -1;
  st.oldest_pending_seconds = 1.23456;
  st.ready = true;
  st.ack_latency_buckets = {0.5, 1};
  st.ack_latency_counts = {1, 2};
  st.ack_latency_count = 3;
  st.ack_latency_sum = 4.25;
  const std::string text = metrics_text(st);
  EXPECT_EQ(text.rfind("# HELP txbox_relay_published_total Messages acknowledged by Kafka and "
                       "removed from the outbox.\n# TYPE txbox_relay_published_total counter\n"
                       "txbox_relay_published_total{topic=\"a\\\"b\"} 2\n",
                       0),
            0u)
      << text;
  EXPECT_NE(text.find("\ntxbox_outbox_backlog_rows 0\n"), std::string::npos) << "unknown: 0";
  EXPECT_NE(text.find("\ntxbox_outbox_oldest_pending_seconds 1.235\n"), std::string::npos);
  EXPECT_NE(text.find("\ntxbox_relay_ready 1\n"), std::string::npos);
  const std::string histogram =
      "txbox_relay_commit_to_ack_seconds_bucket{le=\"0.5\"} 1\n"
      "txbox_relay_commit_to_ack_seconds_bucket{le=\"1\"} 2\n"
      "txbox_relay_commit_to_ack_seconds_bucket{le=\"+Inf\"} 3\n"
      "txbox_relay_commit_to_ack_seconds_sum 4.250000\n"
      "txbox_relay_commit_to_ack_seconds_count 3\n";
  ASSERT_GE(text.size(), histogram.size());
  EXPECT_EQ(text.substr(text.size() - histogram.size()), histogram) << "the last metric";
}

}  // namespace
}  // namespace txbox::relay
