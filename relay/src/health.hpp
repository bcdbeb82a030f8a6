// Health and statistics: fed from the loop's reports (settles, lease ticks, backlog, failures),
// logs one line per state change, serves RelayStats and the Prometheus text. Thread-safe.
// A facade over three units under one lock: RelayCounters (the counters), Readiness (ready?
// why not? its log lines) and metrics_text (the Prometheus renderer). Internal to the relay.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>

#include "isr_check.hpp"
#include "kafka_reach.hpp"
#include "lease_table.hpp"
#include "outbox_store.hpp"
#include "problem_throttle.hpp"
#include "readiness.hpp"
#include "relay_counters.hpp"
#include "settle_plan.hpp"
#include "standby_gate.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/relay.hpp"

namespace txbox::relay {

class Health {
 public:
  /// `database`: the database URL for log lines (redacted here).
  explicit Health(const std::string& database);

  void db_connected();
  /// A database failure or a bug: logged once per distinct problem (a permanent one again
  /// every minute while it lasts), /readyz false until a round succeeds again. `retry_in`:
  /// when the loop tries again.
  void failed(const detail::failure& f, std::chrono::milliseconds retry_in);
  /// A whole pass (claim, and settle if anything was claimed) succeeded: a problem reported
  /// by failed() is over.
  void db_ok();
  void broker(bool ok, const std::string& why = {});
  /// The broker probe's verdict: not ready while Kafka does not answer; one line when that
  /// starts and one when it ends.
  void on_kafka(const ReachVerdict& v);
  /// While a round waits for acknowledgements: the partitions Kafka refuses acks=all writes
  /// to. Logged when the set changes; cleared (silently) when deliveries succeed again.
  void on_isr_shortfalls(const std::vector<IsrShortfall>& shortfalls);

  void on_settle(const SettlePlan& plan, const SettleCounts& counts);
  void on_leases(const LeaseTick& tick);
  void on_backlog(const Backlog& backlog, std::int64_t producer_queue);
  void on_weak_topics(std::set<std::string> weak);
  void on_producer_replaced();
  void on_late_reports(std::uint64_t total);
  /// The standby gate's verdict on a round of `rows` rows (held: not ready until it passes).
  void on_standbys(const StandbyVerdict& v, std::size_t rows);

  /// exactly_once: a round's transactions (an abort is logged once per distinct reason).
  void on_transactions(std::size_t committed, std::size_t aborted,
                       const std::vector<double>& commit_seconds, const std::string& first_abort);
  /// exactly_once: the lanes held, and rows deleted at a takeover without a re-send.
  void on_lanes(std::size_t lanes, std::size_t recovered_rows);

  [[nodiscard]] RelayStats snapshot() const;
  /// Prometheus text exposition of snapshot().
  [[nodiscard]] std::string metrics_text() const;

 private:
  std::string m_url;  // to hide it in error texts
  mutable std::mutex m_mutex;
  RelayCounters m_counters;
  Readiness m_readiness;
  ProblemThrottle m_abort;  // the last abort reason logged, empty: committing again
};

}  // namespace txbox::relay
