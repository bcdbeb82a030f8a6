// The relay's counters (see relay_counters.hpp).
#include "relay_counters.hpp"

namespace txbox::relay {
namespace {

// Latency histogram bounds (seconds) for commit -> ack and for commit_transaction.
const std::vector<double> k_buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10,   30};

// Books one observation `v` into a histogram of cumulative bucket counts.
void observe(std::vector<std::uint64_t>& counts, double v) {
  for (std::size_t b = 0; b < k_buckets.size() && b < counts.size(); ++b) {
    if (v <= k_buckets[b]) counts[b]++;
  }
}

}  // namespace

RelayCounters::RelayCounters() {
  m_st.ack_latency_buckets = k_buckets;
  m_st.ack_latency_counts.assign(k_buckets.size(), 0);
  m_st.commit_seconds_buckets = k_buckets;
  m_st.commit_seconds_counts.assign(k_buckets.size(), 0);
}

void RelayCounters::on_settle(const SettlePlan& plan, const SettleCounts& counts) {
  for (const auto& [t, n] : plan.published) m_st.published_by_topic[t] += n;
  for (const auto& [t, n] : plan.held) m_st.held_by_topic[t] += n;
  m_st.dead += counts.dead;
  m_st.failed += plan.transient;
  m_st.fenced_rows += plan.delete_ids.size() - counts.deleted;
  for (double l : plan.ack_latencies) {
    observe(m_st.ack_latency_counts, l);
    m_st.ack_latency_count++;
    m_st.ack_latency_sum += l;
  }
}

void RelayCounters::on_leases(const LeaseTick& tick) {
  m_st.lease_changes += tick.changes;
  m_st.shards_owned = tick.view.epochs.size();
}

void RelayCounters::on_backlog(const Backlog& backlog, std::int64_t producer_queue) {
  m_st.backlog_rows = backlog.rows;
  m_st.oldest_pending_seconds = backlog.oldest_seconds;
  m_st.producer_queue = producer_queue;
}

void RelayCounters::on_weak_topics(std::set<std::string> weak) {
  m_st.weak_topics = std::move(weak);
}

void RelayCounters::on_producer_replaced() {
  ++m_st.producer_restarts;
}

void RelayCounters::on_late_reports(std::uint64_t total) {
  m_st.late_reports = total;
}

void RelayCounters::on_standbys(const StandbyVerdict& v, std::size_t rows) {
  m_st.standby_held_rows = v.pass ? 0 : rows;
  m_st.standbys_flushed = v.flushed;
  m_st.standby_wait_seconds += std::chrono::duration<double>(v.waited).count();
  if (!v.pass) ++m_st.standby_holds;
}

void RelayCounters::on_transactions(std::size_t committed, std::size_t aborted,
                                    const std::vector<double>& commit_seconds) {
  m_st.transactions_committed += committed;
  m_st.transactions_aborted += aborted;
  for (double s : commit_seconds) {
    observe(m_st.commit_seconds_counts, s);
    m_st.commit_seconds_sum += s;
    ++m_st.commit_count;
  }
}

void RelayCounters::on_lanes(std::size_t lanes, std::size_t recovered_rows) {
  m_st.lanes_owned = lanes;
  m_st.recovered_rows += recovered_rows;
}

void RelayCounters::on_failure(detail::failure_kind kind) {
  if (kind == detail::failure_kind::kafka_transient || kind == detail::failure_kind::kafka_fatal) {
    return;
  }
  ++m_st.database_failures;
}

}  // namespace txbox::relay
