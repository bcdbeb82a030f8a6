// The relay's counters and gauges, booked from the loop's reports (settles, lease ticks,
// backlog, transactions, ...): what RelayStats counts, apart from readiness. A plain value,
// not thread-safe (Health holds its lock). Internal to the relay.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "lease_table.hpp"
#include "outbox_store.hpp"
#include "settle_plan.hpp"
#include "standby_gate.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/relay.hpp"

namespace txbox::relay {

class RelayCounters {
 public:
  RelayCounters();

  /// A settled round: published and held rows per topic, dead, transient failures, rows
  /// acknowledged but not deleted (fenced), the commit -> ack latencies.
  void on_settle(const SettlePlan& plan, const SettleCounts& counts);
  void on_leases(const LeaseTick& tick);
  void on_backlog(const Backlog& backlog, std::int64_t producer_queue);
  void on_weak_topics(std::set<std::string> weak);
  void on_producer_replaced();
  void on_late_reports(std::uint64_t total);
  /// The standby gate's verdict on a round of `rows` rows.
  void on_standbys(const StandbyVerdict& v, std::size_t rows);
  /// exactly_once: a round's transactions and their commit_transaction times.
  void on_transactions(std::size_t committed, std::size_t aborted,
                       const std::vector<double>& commit_seconds);
  void on_lanes(std::size_t lanes, std::size_t recovered_rows);
  /// A failure of the loop: counted as a database failure unless Kafka's.
  void on_failure(detail::failure_kind kind);

  /// The counters; the readiness fields (ready, kafka_reachable, database_misconfigured,
  /// partitions_below_min_isr) are left at their defaults.
  [[nodiscard]] const RelayStats& stats() const { return m_st; }

 private:
  RelayStats m_st;
};

}  // namespace txbox::relay
