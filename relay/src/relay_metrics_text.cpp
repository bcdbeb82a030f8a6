// The Prometheus names, types and help texts of the relay's metrics (see relay_metrics_text.hpp).
#include "relay_metrics_text.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "txbox/detail/prometheus.hpp"

namespace txbox::relay {
namespace {

using detail::PromText;

std::string topic_label(const std::string& t) {
  return "topic=\"" + detail::prom_label(t) + "\"";
}

// A metric with one sample and no labels.
void metric(PromText& p, const char* name, const char* type, const char* help,
            const std::string& value) {
  p.metric(name, type, help, "", value);
}

// What went out, what failed, and the shards and backlog behind it.
void delivery_metrics(PromText& p, const RelayStats& st) {
  p.header("txbox_relay_published_total", "counter",
           "Messages acknowledged by Kafka and removed from the outbox.");
  for (const auto& [t, n] : st.published_by_topic) {
    p.sample("txbox_relay_published_total", topic_label(t), std::to_string(n));
  }
  metric(p, "txbox_relay_failed_total", "counter", "Transient delivery failures (retried).",
         std::to_string(st.failed));
  metric(p, "txbox_relay_dead_total", "counter", "Messages moved to outbox_dead.",
         std::to_string(st.dead));
  metric(p, "txbox_relay_lease_changes_total", "counter", "Shard leases taken, lost or released.",
         std::to_string(st.lease_changes));
  metric(p, "txbox_relay_shards_owned", "gauge", "Shards this relay publishes.",
         std::to_string(st.shards_owned));
  metric(p, "txbox_outbox_backlog_rows", "gauge",
         "Rows waiting in the outbox (exact up to 100000, above that PostgreSQL's estimate).",
         std::to_string(std::max<std::int64_t>(st.backlog_rows, 0)));
  metric(p, "txbox_outbox_oldest_pending_seconds", "gauge", "Age of the oldest waiting row.",
         fmt::format("{:.3f}", st.oldest_pending_seconds));
  metric(p, "txbox_relay_producer_queue", "gauge", "Messages in librdkafka's queue.",
         std::to_string(st.producer_queue));
}

// Readiness and the problems behind it; the producer's restarts and the rows left behind.
void state_metrics(PromText& p, const RelayStats& st) {
  metric(p, "txbox_relay_ready", "gauge",
         "1 when the database and Kafka are reachable (and the standby gate passes).",
         st.ready ? "1" : "0");
  metric(p, "txbox_relay_kafka_reachable", "gauge",
         "1 when the brokers answered the relay's last probe (a metadata request); 0: it "
         "takes no shards and claims no rows.",
         st.kafka_reachable ? "1" : "0");
  metric(p, "txbox_relay_database_misconfigured", "gauge",
         "1 while the relay retries a database problem an operator must fix: a connection "
         "refused (database missing, authentication failed) or a privilege or object missing.",
         st.database_misconfigured ? "1" : "0");
  metric(p, "txbox_relay_producer_restarts_total", "counter",
         "Kafka producers replaced after a fatal error.", std::to_string(st.producer_restarts));
  metric(p, "txbox_relay_fenced_rows_total", "counter",
         "Rows Kafka acknowledged but the relay did not delete: their shard was taken over "
         "meanwhile (the new owner sends them again).",
         std::to_string(st.fenced_rows));
  metric(p, "txbox_relay_late_reports_total", "counter",
         "Delivery reports that came after their round was settled (ignored).",
         std::to_string(st.late_reports));
  metric(p, "txbox_relay_database_failures_total", "counter",
         "Database statements or connections that failed (the round was retried).",
         std::to_string(st.database_failures));
  metric(p, "txbox_relay_partitions_below_min_isr", "gauge",
         "Partitions the waiting round goes to whose in-sync replicas are fewer than "
         "min.insync.replicas (Kafka refuses acks=all writes).",
         std::to_string(st.partitions_below_min_isr));
}

// Weak topics, rows held by strict durability, and the standby gate.
void durability_metrics(PromText& p, const RelayStats& st) {
  p.header("txbox_relay_topic_weak", "gauge",
           "1 for a target topic with replication.factor < 3, min.insync.replicas < 2 or "
           "unclean leader election.");
  for (const auto& t : st.weak_topics) p.sample("txbox_relay_topic_weak", topic_label(t), "1");
  p.header("txbox_relay_durability_held_total", "counter",
           "Rows kept in the outbox because their topic failed strict durability (per attempt).");
  for (const auto& [t, n] : st.held_by_topic) {
    p.sample("txbox_relay_durability_held_total", topic_label(t), std::to_string(n));
  }
  metric(p, "txbox_relay_standby_held_rows", "gauge",
         "Claimed rows kept in the outbox until relay.wait_for_standbys standbys flush their "
         "WAL (0: publishing).",
         std::to_string(st.standby_held_rows));
  metric(p, "txbox_relay_standbys_flushed", "gauge",
         "Standbys that had flushed the last round's WAL when it was checked.",
         std::to_string(st.standbys_flushed));
  metric(p, "txbox_relay_standby_holds_total", "counter",
         "Rounds held because fewer than relay.wait_for_standbys standbys caught up.",
         std::to_string(st.standby_holds));
  metric(p, "txbox_relay_standby_wait_seconds_total", "counter",
         "Time rounds spent waiting for the standbys to flush their WAL.",
         fmt::format("{:.6f}", st.standby_wait_seconds));
}

// exactly_once's transactions and lanes.
void transaction_metrics(PromText& p, const RelayStats& st) {
  metric(p, "txbox_relay_transactions_committed_total", "counter",
         "exactly_once: Kafka transactions committed.", std::to_string(st.transactions_committed));
  metric(p, "txbox_relay_transactions_aborted_total", "counter",
         "exactly_once: Kafka transactions aborted (their rows are sent again in new ones).",
         std::to_string(st.transactions_aborted));
  p.histogram("txbox_relay_transaction_commit_seconds",
              "exactly_once: time spent in commit_transaction.", "", st.commit_seconds_buckets,
              st.commit_seconds_counts, st.commit_count, st.commit_seconds_sum);
  metric(p, "txbox_relay_recovered_rows_total", "counter",
         "exactly_once: rows deleted at a lane's takeover without a re-send (committed in Kafka "
         "by the lane's previous owner, not yet deleted).",
         std::to_string(st.recovered_rows));
  metric(p, "txbox_relay_lanes_owned", "gauge",
         "exactly_once: lanes (8 shards each) this relay holds.", std::to_string(st.lanes_owned));
}

}  // namespace

std::string metrics_text(const RelayStats& st) {
  PromText p;
  delivery_metrics(p, st);
  state_metrics(p, st);
  durability_metrics(p, st);
  transaction_metrics(p, st);
  p.histogram("txbox_relay_commit_to_ack_seconds", "Time from outbox insert to Kafka ack.", "",
              st.ack_latency_buckets, st.ack_latency_counts, st.ack_latency_count,
              st.ack_latency_sum);
  return p.str();
}

}  // namespace txbox::relay
