// Health and statistics (see health.hpp).
#include "health.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "txbox/conninfo.hpp"
#include "txbox/detail/prometheus.hpp"

namespace txbox::relay {
namespace {

// A permanent database problem (an operator must act) is logged again this often while it
// lasts: a daemon that retries in silence looks healthy in its log.
constexpr auto k_repeat = std::chrono::minutes(1);

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

Health::Health(const std::string& database)
    : m_url(database), m_database(redact_conninfo(database)) {
  m_st.ack_latency_buckets = k_buckets;
  m_st.ack_latency_counts.assign(k_buckets.size(), 0);
  m_st.commit_seconds_buckets = k_buckets;
  m_st.commit_seconds_counts.assign(k_buckets.size(), 0);
}

void Health::update_ready() {
  m_st.ready =
      m_db_up && m_broker_ok && m_kafka == kafka_state::up && m_standbys_ok && m_problem.empty();
}

void Health::db_connected() {
  std::lock_guard lock(m_mutex);
  if (m_db_up) return;
  m_db_up = true;
  spdlog::info("database: connected ({})", m_database);
  update_ready();
}

void Health::failed(const detail::failure& f, std::chrono::milliseconds retry_in) {
  const std::string message = libpq_error_text(f.message, m_url);
  std::lock_guard lock(m_mutex);
  const std::string problem =
      fmt::format("{}|{}|{}", detail::kind_name(f.kind), f.sqlstate, message);
  if (f.kind == detail::failure_kind::kafka_transient ||
      f.kind == detail::failure_kind::kafka_fatal) {
    // A Kafka call of the loop (exactly_once: fencing a lane, reading its progress) failed:
    // expected while a broker restarts or a coordinator moves. Not ready until deliveries
    // succeed again; one line per distinct problem.
    if (problem != m_transient) {
      spdlog::warn("{}; retrying in {} ms", message, retry_in.count());
    }
    m_transient = problem;
    m_broker_ok = false;
    update_ready();
    return;
  }
  ++m_st.database_failures;
  if (f.kind == detail::failure_kind::db_transient && f.reconnect) {
    // The connection is gone: one line when the database goes away, one when it is back.
    if (m_db_up) spdlog::warn("database: unreachable, retrying with backoff: {}", message);
    m_db_up = false;
    m_problem.clear();
  } else if (f.kind == detail::failure_kind::db_transient) {
    // A lock or statement timeout, a deadlock, ...: not a readiness problem; one line until a
    // round goes through.
    if (problem != m_transient) {
      spdlog::warn("database: {} (SQLSTATE {}); retrying the round in {} ms", message, f.sqlstate,
                   retry_in.count());
    }
    m_transient = problem;
  } else if (problem != m_problem || clock::now() - m_problem_logged >= k_repeat) {
    const bool again = problem == m_problem;
    m_problem = problem;
    m_problem_logged = clock::now();
    if (f.kind == detail::failure_kind::db_permanent) {
      m_st.database_misconfigured = true;
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
  update_ready();
}

void Health::db_ok() {
  std::lock_guard lock(m_mutex);
  m_transient.clear();
  if (m_problem.empty()) return;
  m_problem.clear();
  m_st.database_misconfigured = false;
  spdlog::info("database: statements succeed again");
  update_ready();
}

void Health::broker(bool ok, const std::string& why) {
  std::lock_guard lock(m_mutex);
  if (ok == m_broker_ok) return;
  m_broker_ok = ok;
  if (ok) {
    m_isr_problem.clear();
    m_st.partitions_below_min_isr = 0;
    spdlog::info("kafka: deliveries succeed again");
  } else {
    spdlog::warn("kafka: deliveries failing, retrying with backoff: {}", why);
  }
  update_ready();
}

void Health::on_kafka(const ReachVerdict& v) {
  std::lock_guard lock(m_mutex);
  m_st.kafka_reachable = v.reachable;
  if (!v.reachable && v.why.empty()) return;  // no probe ended yet
  const auto state = v.reachable ? kafka_state::up : kafka_state::down;
  if (state == m_kafka) return;
  if (state == kafka_state::down) {
    spdlog::warn(
        "kafka: cannot reach the brokers: {}; not ready, claiming no rows and taking no shards "
        "until they answer. Hint: check kafka.bootstrap.servers, the TLS and SASL settings, and "
        "that the brokers run",
        v.why);
  } else if (m_kafka == kafka_state::down) {
    spdlog::info("kafka: the brokers answer again");
  }
  m_kafka = state;
  update_ready();
}

void Health::on_isr_shortfalls(const std::vector<IsrShortfall>& shortfalls) {
  std::lock_guard lock(m_mutex);
  m_st.partitions_below_min_isr = shortfalls.size();
  std::string problem = describe(shortfalls);
  if (problem == m_isr_problem) return;
  if (!shortfalls.empty()) {
    spdlog::warn(
        "kafka: {}: Kafka refuses acks=all writes (NOT_ENOUGH_REPLICAS) until enough replicas "
        "are back in sync; the rows stay in the outbox and go out then, in order",
        problem);
  } else {
    spdlog::info("kafka: the waiting round's partitions are back in sync");
  }
  m_isr_problem = std::move(problem);
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

void Health::on_leases(const LeaseTick& tick) {
  std::lock_guard lock(m_mutex);
  m_st.lease_changes += tick.changes;
  m_st.shards_owned = tick.view.epochs.size();
}

void Health::on_backlog(const Backlog& backlog, std::int64_t producer_queue) {
  std::lock_guard lock(m_mutex);
  m_st.backlog_rows = backlog.rows;
  m_st.oldest_pending_seconds = backlog.oldest_seconds;
  m_st.producer_queue = producer_queue;
}

void Health::on_weak_topics(std::set<std::string> weak) {
  std::lock_guard lock(m_mutex);
  m_st.weak_topics = std::move(weak);
}

void Health::on_producer_replaced() {
  std::lock_guard lock(m_mutex);
  ++m_st.producer_restarts;
}

void Health::on_late_reports(std::uint64_t total) {
  std::lock_guard lock(m_mutex);
  m_st.late_reports = total;
}

void Health::on_standbys(const StandbyVerdict& v, std::size_t rows) {
  std::lock_guard lock(m_mutex);
  m_st.standby_held_rows = v.pass ? 0 : rows;
  m_st.standbys_flushed = v.flushed;
  m_st.standby_wait_seconds += std::chrono::duration<double>(v.waited).count();
  if (!v.pass) ++m_st.standby_holds;
  m_standbys_ok = v.pass;  // the gate logs the state changes
  update_ready();
}

void Health::on_transactions(std::size_t committed, std::size_t aborted,
                             const std::vector<double>& commit_seconds,
                             const std::string& first_abort) {
  std::lock_guard lock(m_mutex);
  m_st.transactions_committed += committed;
  m_st.transactions_aborted += aborted;
  for (double s : commit_seconds) {
    observe(m_st.commit_seconds_counts, s);
    m_st.commit_seconds_sum += s;
    ++m_st.commit_count;
  }
  if (aborted > 0 && first_abort != m_abort) {
    spdlog::warn("exactly-once: {} transaction(s) aborted ({}); their rows go out in new ones",
                 aborted, first_abort);
    m_abort = first_abort;
  } else if (aborted == 0 && committed > 0 && !m_abort.empty()) {
    spdlog::info("exactly-once: transactions commit again");
    m_abort.clear();
  }
}

void Health::on_lanes(std::size_t lanes, std::size_t recovered_rows) {
  std::lock_guard lock(m_mutex);
  m_st.lanes_owned = lanes;
  m_st.recovered_rows += recovered_rows;
}

RelayStats Health::snapshot() const {
  std::lock_guard lock(m_mutex);
  return m_st;
}

std::string Health::metrics_text() const {
  const RelayStats st = snapshot();
  detail::PromText p;
  const auto topic = [](const std::string& t) { return "topic=\"" + detail::prom_label(t) + "\""; };
  p.header("txbox_relay_published_total", "counter",
           "Messages acknowledged by Kafka and removed from the outbox.");
  for (const auto& [t, n] : st.published_by_topic) {
    p.sample("txbox_relay_published_total", topic(t), std::to_string(n));
  }
  const auto metric = [&p](const char* name, const char* type, const char* help,
                           const std::string& value) { p.metric(name, type, help, "", value); };
  metric("txbox_relay_failed_total", "counter", "Transient delivery failures (retried).",
         std::to_string(st.failed));
  metric("txbox_relay_dead_total", "counter", "Messages moved to outbox_dead.",
         std::to_string(st.dead));
  metric("txbox_relay_lease_changes_total", "counter", "Shard leases taken, lost or released.",
         std::to_string(st.lease_changes));
  metric("txbox_relay_shards_owned", "gauge", "Shards this relay publishes.",
         std::to_string(st.shards_owned));
  metric("txbox_outbox_backlog_rows", "gauge",
         "Rows waiting in the outbox (exact up to 100000, above that PostgreSQL's estimate).",
         std::to_string(std::max<std::int64_t>(st.backlog_rows, 0)));
  metric("txbox_outbox_oldest_pending_seconds", "gauge", "Age of the oldest waiting row.",
         fmt::format("{:.3f}", st.oldest_pending_seconds));
  metric("txbox_relay_producer_queue", "gauge", "Messages in librdkafka's queue.",
         std::to_string(st.producer_queue));
  metric("txbox_relay_ready", "gauge",
         "1 when the database and Kafka are reachable (and the standby gate passes).",
         st.ready ? "1" : "0");
  metric("txbox_relay_kafka_reachable", "gauge",
         "1 when the brokers answered the relay's last probe (a metadata request); 0: it "
         "takes no shards and claims no rows.",
         st.kafka_reachable ? "1" : "0");
  metric("txbox_relay_database_misconfigured", "gauge",
         "1 while the relay retries a database problem an operator must fix: a connection "
         "refused (database missing, authentication failed) or a privilege or object missing.",
         st.database_misconfigured ? "1" : "0");
  metric("txbox_relay_producer_restarts_total", "counter",
         "Kafka producers replaced after a fatal error.", std::to_string(st.producer_restarts));
  metric("txbox_relay_fenced_rows_total", "counter",
         "Rows Kafka acknowledged but the relay did not delete: their shard was taken over "
         "meanwhile (the new owner sends them again).",
         std::to_string(st.fenced_rows));
  metric("txbox_relay_late_reports_total", "counter",
         "Delivery reports that came after their round was settled (ignored).",
         std::to_string(st.late_reports));
  metric("txbox_relay_database_failures_total", "counter",
         "Database statements or connections that failed (the round was retried).",
         std::to_string(st.database_failures));
  metric("txbox_relay_partitions_below_min_isr", "gauge",
         "Partitions the waiting round goes to whose in-sync replicas are fewer than "
         "min.insync.replicas (Kafka refuses acks=all writes).",
         std::to_string(st.partitions_below_min_isr));
  p.header("txbox_relay_topic_weak", "gauge",
           "1 for a target topic with replication.factor < 3, min.insync.replicas < 2 or "
           "unclean leader election.");
  for (const auto& t : st.weak_topics) p.sample("txbox_relay_topic_weak", topic(t), "1");
  p.header("txbox_relay_durability_held_total", "counter",
           "Rows kept in the outbox because their topic failed strict durability (per attempt).");
  for (const auto& [t, n] : st.held_by_topic) {
    p.sample("txbox_relay_durability_held_total", topic(t), std::to_string(n));
  }
  metric("txbox_relay_standby_held_rows", "gauge",
         "Claimed rows kept in the outbox until relay.wait_for_standbys standbys flush their "
         "WAL (0: publishing).",
         std::to_string(st.standby_held_rows));
  metric("txbox_relay_standbys_flushed", "gauge",
         "Standbys that had flushed the last round's WAL when it was checked.",
         std::to_string(st.standbys_flushed));
  metric("txbox_relay_standby_holds_total", "counter",
         "Rounds held because fewer than relay.wait_for_standbys standbys caught up.",
         std::to_string(st.standby_holds));
  metric("txbox_relay_standby_wait_seconds_total", "counter",
         "Time rounds spent waiting for the standbys to flush their WAL.",
         fmt::format("{:.6f}", st.standby_wait_seconds));
  metric("txbox_relay_transactions_committed_total", "counter",
         "exactly_once: Kafka transactions committed.", std::to_string(st.transactions_committed));
  metric("txbox_relay_transactions_aborted_total", "counter",
         "exactly_once: Kafka transactions aborted (their rows are sent again in new ones).",
         std::to_string(st.transactions_aborted));
  p.histogram("txbox_relay_transaction_commit_seconds",
              "exactly_once: time spent in commit_transaction.", "", st.commit_seconds_buckets,
              st.commit_seconds_counts, st.commit_count, st.commit_seconds_sum);
  metric("txbox_relay_recovered_rows_total", "counter",
         "exactly_once: rows deleted at a lane's takeover without a re-send (committed in Kafka "
         "by the lane's previous owner, not yet deleted).",
         std::to_string(st.recovered_rows));
  metric("txbox_relay_lanes_owned", "gauge",
         "exactly_once: lanes (8 shards each) this relay holds.", std::to_string(st.lanes_owned));
  p.histogram("txbox_relay_commit_to_ack_seconds", "Time from outbox insert to Kafka ack.", "",
              st.ack_latency_buckets, st.ack_latency_counts, st.ack_latency_count,
              st.ack_latency_sum);
  return p.str();
}

}  // namespace txbox::relay
