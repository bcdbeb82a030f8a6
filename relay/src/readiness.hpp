// Is the relay ready (/readyz), and if not, why: the database connected with no problem an
// operator must fix, deliveries succeeding, the brokers answering the probe, the standby gate
// passing. Logs one line when a condition starts failing and one when it is over (a problem
// an operator must fix again every minute while it lasts). Not thread-safe (Health holds its
// lock). Internal to the relay.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "isr_check.hpp"
#include "kafka_reach.hpp"
#include "problem_throttle.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox::relay {

/// What readiness contributes to RelayStats, and why the relay is not ready.
struct ReadinessState {
  bool ready = false;
  bool kafka_reachable = false;
  bool database_misconfigured = false;
  std::size_t partitions_below_min_isr = 0;
  std::string why_not;  ///< empty when ready
};

class Readiness {
 public:
  using clock = ProblemThrottle::clock;

  /// `database`: the database, already redacted, for the "connected" line.
  explicit Readiness(std::string database);

  void db_connected();
  /// A failure of the loop; `message`: its text, already redacted. `retry_in`: when the loop
  /// tries again. See Health::failed.
  void failed(const detail::failure& f, const std::string& message,
              std::chrono::milliseconds retry_in, clock::time_point now);
  /// A whole pass went through: a problem reported by failed() is over.
  void db_ok();
  /// Deliveries succeed (ok) or fail (`why`); logs the change only.
  void broker(bool ok, const std::string& why);
  void on_kafka(const ReachVerdict& v);
  void on_isr_shortfalls(const std::vector<IsrShortfall>& shortfalls);
  /// The standby gate passed the last round (it logs its state changes itself).
  void on_standbys(bool pass) { m_standbys_ok = pass; }

  [[nodiscard]] bool ready() const;
  /// Why not ready, the first failing condition; empty when ready.
  [[nodiscard]] std::string why_not() const;
  [[nodiscard]] ReadinessState state() const;

 private:
  void failed_kafka(const std::string& problem, const std::string& message,
                    std::chrono::milliseconds retry_in, clock::time_point now);
  void failed_for_good(const detail::failure& f, const std::string& problem,
                       const std::string& message, std::chrono::milliseconds retry_in,
                       clock::time_point now);

  enum class KafkaState { unknown, up, down };

  std::string m_database;  // redacted
  bool m_db_up = false;
  bool m_broker_ok = true;
  std::string m_broker_why;  // why deliveries fail, while they do
  KafkaState m_kafka = KafkaState::unknown;
  bool m_kafka_reachable = false;
  std::string m_kafka_why;
  bool m_standbys_ok = true;  // the standby gate passed the last round
  bool m_misconfigured = false;
  std::size_t m_partitions_below_min_isr = 0;
  // The permanent failure or bug being retried: logged again every minute while it lasts.
  ProblemThrottle m_problem{std::chrono::minutes(1)};
  ProblemThrottle m_transient;  // the last transient failure logged since the last good round
  ProblemThrottle m_isr;        // describe() of the last shortfalls logged
};

}  // namespace txbox::relay
