// Readiness and its log lines (see readiness.hpp).
#include "readiness.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace txbox::relay {

Readiness::Readiness(std::string database) : m_database(std::move(database)) {}

void Readiness::db_connected() {
  if (m_db_up) return;
  m_db_up = true;
  spdlog::info("database: connected ({})", m_database);
}

void Readiness::failed(const detail::failure& f, const std::string& message,
                       std::chrono::milliseconds retry_in, clock::time_point now) {
  const std::string problem =
      fmt::format("{}|{}|{}", detail::kind_name(f.kind), f.sqlstate, message);
  if (f.kind == detail::failure_kind::kafka_transient ||
      f.kind == detail::failure_kind::kafka_fatal) {
    failed_kafka(problem, message, retry_in, now);
  } else if (f.kind == detail::failure_kind::db_transient && f.reconnect) {
    // The connection is gone: one line when the database goes away, one when it is back.
    if (m_db_up) spdlog::warn("database: unreachable, retrying with backoff: {}", message);
    m_db_up = false;
    m_problem.clear();
  } else if (f.kind == detail::failure_kind::db_transient) {
    // A lock or statement timeout, a deadlock, ...: not a readiness problem; one line until a
    // round goes through.
    if (m_transient.admit(problem, now)) {
      spdlog::warn("database: {} (SQLSTATE {}); retrying the round in {} ms", message, f.sqlstate,
                   retry_in.count());
    }
  } else {
    failed_for_good(f, problem, message, retry_in, now);
  }
}

// A Kafka call of the loop (exactly_once: fencing a lane, reading its progress) failed:
// expected while a broker restarts or a coordinator moves. Not ready until deliveries succeed
// again; one line per distinct problem.
void Readiness::failed_kafka(const std::string& problem, const std::string& message,
                             std::chrono::milliseconds retry_in, clock::time_point now) {
  if (m_transient.admit(problem, now)) {
    spdlog::warn("{}; retrying in {} ms", message, retry_in.count());
  }
  m_broker_ok = false;
  m_broker_why = message;
}

// A permanent database problem (an operator must act) or a bug: logged again every minute
// while it lasts, as a daemon that retries in silence looks healthy in its log.
void Readiness::failed_for_good(const detail::failure& f, const std::string& problem,
                                const std::string& message, std::chrono::milliseconds retry_in,
                                clock::time_point now) {
  const bool again = problem == m_problem.current();
  if (!m_problem.admit(problem, now)) return;
  if (f.kind == detail::failure_kind::db_permanent) {
    m_misconfigured = true;
    if (f.reconnect) m_db_up = false;  // refused: "connected" is logged when it is over
    spdlog::error("database: {}{}{}. {}; retrying every {:.1f} s", again ? "still failing: " : "",
                  message, f.sqlstate.empty() ? "" : " (SQLSTATE " + f.sqlstate + ")",
                  f.hint.empty() ? "An operator must fix this" : "Hint: " + f.hint,
                  static_cast<double>(retry_in.count()) / 1000);
  } else {
    spdlog::error(
        "unexpected error ({}): {}; this is a bug in txbox, please report it; retrying "
        "every {:.1f} s",
        detail::kind_name(f.kind), message, static_cast<double>(retry_in.count()) / 1000);
  }
}

void Readiness::db_ok() {
  m_transient.clear();
  if (!m_problem.active()) return;
  m_problem.clear();
  m_misconfigured = false;
  spdlog::info("database: statements succeed again");
}

void Readiness::broker(bool ok, const std::string& why) {
  if (ok == m_broker_ok) return;
  m_broker_ok = ok;
  m_broker_why = ok ? std::string() : why;
  if (ok) {
    m_isr.clear();
    m_partitions_below_min_isr = 0;
    spdlog::info("kafka: deliveries succeed again");
  } else {
    spdlog::warn("kafka: deliveries failing, retrying with backoff: {}", why);
  }
}

void Readiness::on_kafka(const ReachVerdict& v) {
  m_kafka_reachable = v.reachable;
  if (!v.reachable && v.why.empty()) return;  // no probe ended yet
  const auto state = v.reachable ? KafkaState::up : KafkaState::down;
  if (state == m_kafka) return;
  if (state == KafkaState::down) {
    spdlog::warn(
        "kafka: cannot reach the brokers: {}; not ready, claiming no rows and taking no shards "
        "until they answer. Hint: check kafka.bootstrap.servers, the TLS and SASL settings, and "
        "that the brokers run",
        v.why);
  } else if (m_kafka == KafkaState::down) {
    spdlog::info("kafka: the brokers answer again");
  }
  m_kafka = state;
  m_kafka_why = v.why;
}

void Readiness::on_isr_shortfalls(const std::vector<IsrShortfall>& shortfalls) {
  m_partitions_below_min_isr = shortfalls.size();
  const std::string problem = describe(shortfalls);
  if (!m_isr.admit(problem, clock::now())) return;
  if (!shortfalls.empty()) {
    spdlog::warn(
        "kafka: {}: Kafka refuses acks=all writes (NOT_ENOUGH_REPLICAS) until enough replicas "
        "are back in sync; the rows stay in the outbox and go out then, in order",
        problem);
  } else {
    spdlog::info("kafka: the waiting round's partitions are back in sync");
  }
}

bool Readiness::ready() const {
  return m_db_up && m_broker_ok && m_kafka == KafkaState::up && m_standbys_ok &&
         !m_problem.active();
}

std::string Readiness::why_not() const {
  if (!m_db_up) return "the database is not connected";
  if (!m_broker_ok) return "deliveries to Kafka fail: " + m_broker_why;
  if (m_kafka == KafkaState::unknown) return "the brokers have not answered a probe yet";
  if (m_kafka == KafkaState::down) return "the brokers do not answer: " + m_kafka_why;
  if (!m_standbys_ok) return "the standbys have not flushed the last round's WAL";
  if (m_problem.active()) return "a database problem is being retried";
  return {};
}

ReadinessState Readiness::state() const {
  return {.ready = ready(),
          .kafka_reachable = m_kafka_reachable,
          .database_misconfigured = m_misconfigured,
          .partitions_below_min_isr = m_partitions_below_min_isr,
          .why_not = why_not()};
}

}  // namespace txbox::relay
