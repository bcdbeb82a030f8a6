// Health and statistics (see health.hpp).
#include "health.hpp"

#include <spdlog/spdlog.h>

#include "relay_metrics_text.hpp"
#include "txbox/conninfo.hpp"

namespace txbox::relay {

Health::Health(const std::string& database)
    : m_url(database), m_readiness(redact_conninfo(database)) {}

void Health::db_connected() {
  std::lock_guard lock(m_mutex);
  m_readiness.db_connected();
}

void Health::failed(const detail::failure& f, std::chrono::milliseconds retry_in) {
  const std::string message = libpq_error_text(f.message, m_url);
  std::lock_guard lock(m_mutex);
  m_counters.on_failure(f.kind);
  m_readiness.failed(f, message, retry_in, clock::now());
}

void Health::db_ok() {
  std::lock_guard lock(m_mutex);
  m_readiness.db_ok();
}

void Health::broker(bool ok, const std::string& why) {
  std::lock_guard lock(m_mutex);
  m_readiness.broker(ok, why);
}

void Health::on_kafka(const ReachVerdict& v) {
  std::lock_guard lock(m_mutex);
  m_readiness.on_kafka(v);
}

void Health::on_isr_shortfalls(const std::vector<IsrShortfall>& shortfalls) {
  std::lock_guard lock(m_mutex);
  m_readiness.on_isr_shortfalls(shortfalls);
}

void Health::on_settle(const SettlePlan& plan, const SettleCounts& counts) {
  if (counts.dead > 0) {
    spdlog::error("{} message(s) moved to outbox_dead; first error: {}", counts.dead,
                  plan.dead.front().error);
  }
  // Rows held by strict durability say nothing about the broker.
  if (plan.transient > 0 || !plan.delete_ids.empty() || !plan.dead.empty()) {
    broker(plan.transient == 0 || !plan.delete_ids.empty(), plan.first_error);
  }
  std::lock_guard lock(m_mutex);
  m_counters.on_settle(plan, counts);
}

void Health::on_leases(const LeaseTick& tick) {
  std::lock_guard lock(m_mutex);
  m_counters.on_leases(tick);
}

void Health::on_backlog(const Backlog& backlog, std::int64_t producer_queue) {
  std::lock_guard lock(m_mutex);
  m_counters.on_backlog(backlog, producer_queue);
}

void Health::on_weak_topics(std::set<std::string> weak) {
  std::lock_guard lock(m_mutex);
  m_counters.on_weak_topics(std::move(weak));
}

void Health::on_producer_replaced() {
  std::lock_guard lock(m_mutex);
  m_counters.on_producer_replaced();
}

void Health::on_late_reports(std::uint64_t total) {
  std::lock_guard lock(m_mutex);
  m_counters.on_late_reports(total);
}

void Health::on_standbys(const StandbyVerdict& v, std::size_t rows) {
  std::lock_guard lock(m_mutex);
  m_counters.on_standbys(v, rows);
  m_readiness.on_standbys(v.pass);  // the gate logs the state changes
}

void Health::on_transactions(std::size_t committed, std::size_t aborted,
                             const std::vector<double>& commit_seconds,
                             const std::string& first_abort) {
  std::lock_guard lock(m_mutex);
  m_counters.on_transactions(committed, aborted, commit_seconds);
  if (aborted > 0 && m_abort.admit(first_abort, clock::now())) {
    spdlog::warn("exactly-once: {} transaction(s) aborted ({}); their rows go out in new ones",
                 aborted, first_abort);
  } else if (aborted == 0 && committed > 0 && m_abort.active()) {
    spdlog::info("exactly-once: transactions commit again");
    m_abort.clear();
  }
}

void Health::on_lanes(std::size_t lanes, std::size_t recovered_rows) {
  std::lock_guard lock(m_mutex);
  m_counters.on_lanes(lanes, recovered_rows);
}

RelayStats Health::snapshot() const {
  std::lock_guard lock(m_mutex);
  RelayStats st = m_counters.stats();
  const ReadinessState r = m_readiness.state();
  st.ready = r.ready;
  st.kafka_reachable = r.kafka_reachable;
  st.database_misconfigured = r.database_misconfigured;
  st.partitions_below_min_isr = r.partitions_below_min_isr;
  return st;
}

std::string Health::metrics_text() const {
  return relay::metrics_text(snapshot());
}

}  // namespace txbox::relay
