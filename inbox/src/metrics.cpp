// stats_book and the Prometheus names of the inbox's metrics.
#include "metrics.hpp"

#include <fmt/format.h>

#include "txbox/detail/prometheus.hpp"

namespace txbox::inbox {
namespace {

// Handler latency histogram bounds (seconds).
const std::vector<double> k_buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};

}  // namespace

stats_book::stats_book() {
  m_st.handler_latency_buckets = k_buckets;
  m_st.handler_latency_counts.assign(k_buckets.size(), 0);
}

void stats_book::batch(const batch_result& r) {
  std::lock_guard lock(m_mutex);
  m_st.failures += r.failures.size();
  for (const double seconds : r.handler_seconds) {
    for (std::size_t i = 0; i < k_buckets.size(); ++i) {
      if (seconds <= k_buckets[i]) ++m_st.handler_latency_counts[i];
    }
    ++m_st.handler_latency_count;
    m_st.handler_latency_sum += seconds;
  }
  if (r.outcome != batch_result::status::committed) return;
  m_st.processed += r.processed;
  m_st.duplicates += r.duplicates;
  m_st.dead += r.dead;
  ++m_st.batches;
}

void stats_book::requeue(const requeue_result& r) {
  std::lock_guard lock(m_mutex);
  m_st.requeued += r.processed;
  m_st.processed += r.processed;
}

void stats_book::rebalance() {
  std::lock_guard lock(m_mutex);
  ++m_st.rebalances;
}

void stats_book::database_retry() {
  std::lock_guard lock(m_mutex);
  ++m_st.database_retries;
}

void stats_book::set_ready(bool ready) {
  std::lock_guard lock(m_mutex);
  m_st.ready = ready;
}

void stats_book::set_lag(std::map<std::string, std::int64_t> lag) {
  std::lock_guard lock(m_mutex);
  m_st.lag = std::move(lag);
}

ConsumerStats stats_book::snapshot(std::uint64_t cleaned) const {
  std::lock_guard lock(m_mutex);
  ConsumerStats st = m_st;
  st.cleaned = cleaned;
  return st;
}

std::string metrics_text(const ConsumerStats& st, const std::string& name) {
  const std::string consumer = "consumer=\"" + detail::prom_label(name) + "\"";
  detail::PromText p;
  const auto counter = [&](const char* metric, const char* help, std::uint64_t v) {
    p.metric(metric, "counter", help, consumer, std::to_string(v));
  };
  counter("txbox_inbox_processed_total", "Messages whose handler committed.", st.processed);
  counter("txbox_inbox_duplicates_total", "Messages skipped: already in the inbox.", st.duplicates);
  counter("txbox_inbox_dead_total", "Messages moved to inbox_dead.", st.dead);
  counter("txbox_inbox_handler_failures_total", "Handler runs that threw.", st.failures);
  counter("txbox_inbox_requeued_total", "Dead messages processed after a requeue.", st.requeued);
  counter("txbox_inbox_rebalances_total", "Partition assignments and revocations.", st.rebalances);
  counter("txbox_inbox_retention_deleted_total", "Inbox rows removed by retention.", st.cleaned);
  counter("txbox_inbox_database_retries_total",
          "Batches rolled back by a database failure and retried.", st.database_retries);
  p.metric("txbox_inbox_ready", "gauge", "1 when the database and Kafka are reachable.", consumer,
           st.ready ? "1" : "0");
  p.header("txbox_inbox_lag_messages", "gauge", "Messages behind the partition's end.");
  for (const auto& [tp, lag] : st.lag) {
    const auto slash = tp.rfind('/');
    p.sample("txbox_inbox_lag_messages",
             fmt::format("{},topic=\"{}\",partition=\"{}\"", consumer, tp.substr(0, slash),
                         tp.substr(slash + 1)),
             std::to_string(lag));
  }
  p.histogram("txbox_inbox_handler_seconds", "Handler run time.", consumer,
              st.handler_latency_buckets, st.handler_latency_counts, st.handler_latency_count,
              st.handler_latency_sum);
  return p.str();
}

}  // namespace txbox::inbox
