// The chaos driver's run loop: servers, children, the write phase (faults injected while the
// writers commit), the drain, the verification, and the clean-up.
#include "driver.hpp"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <stdexcept>

namespace chaos {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

void Driver::say(const std::string& line) {
  std::cout << fmt::format("[{:7.1f}s] {}\n", since_start(), line) << std::flush;
}

void Driver::setup() {
  std::error_code ec;
  if (m_o.dir.empty()) {
    char tmpl[] = "/tmp/txbox-chaos.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    m_o.dir = tmpl;
  }
  fs::create_directories(m_o.dir);
  m_o.dir = fs::canonical(m_o.dir).string();
  m_tally.logs = m_o.dir + "/logs";
  fs::remove_all(m_tally.logs, ec);
  fs::create_directories(m_tally.logs);
  m_servers =
      std::make_unique<Servers>(m_o.dir + "/servers", m_tally.logs + "/servers.log", m_o.brokers);
  m_tally.assignment = m_o.work.seed % 2 == 0 ? "cooperative-sticky" : "range,roundrobin";
}

void Driver::start_children() {
  const std::string pg = m_env.at("TXBOX_TEST_PG");
  const std::string kafka = m_env.at("TXBOX_TEST_KAFKA");
  // Nothing from the caller's TXBOX_* settings: the schedule alone decides what runs.
  const std::vector<std::string> drop = {"TXBOX_*"};
  for (int i = 1; i <= m_o.relays; ++i) {
    const std::string name = fmt::format("relay-{}", i);
    std::vector<std::string> argv = {RELAY_BIN,
                                     "--database-url",
                                     pg + " application_name=chaos-" + name,
                                     "--kafka-bootstrap-servers",
                                     kafka,
                                     "--name",
                                     name,
                                     "--wait-for-standbys",
                                     m_o.pg_failover ? "1" : "0"};
    if (m_o.exactly_once) argv.emplace_back("--exactly-once");
    m_relays.push_back(std::make_unique<Child>(
        name, std::move(argv),
        // On the cluster the topic must be durable: a relay that finds it weak exits 5 at
        // start (an unexpected exit, so the run fails).
        environment(drop, {"TXBOX_RELAY_LEASE_TTL_MS=" + std::to_string(m_o.lease_ttl_ms),
                           "TXBOX_KAFKA_LINGER_MS=" + std::to_string(m_o.relay_linger_ms),
                           std::string("TXBOX_RELAY_STRICT_DURABILITY=") +
                               (m_o.brokers == 3 ? "true" : "false")}),
        m_tally.logs + "/" + name + ".log"));
  }
  for (int i = 1; i <= m_o.consumers; ++i) {
    const std::string name = fmt::format("consumer-{}", i);
    m_consumers.push_back(std::make_unique<Child>(
        name,
        std::vector<std::string>{
            PROJECTOR_BIN, std::string("consumer.name=") + k_consumer,
            std::string("consumer.topics=") + m_o.work.topic,
            "database.url=" + pg + " application_name=chaos-" + name,
            "kafka.bootstrap.servers=" + kafka,
            "kafka.session.timeout.ms=" + std::to_string(m_o.session_timeout_ms),
            "kafka.heartbeat.interval.ms=" + std::to_string(m_o.session_timeout_ms / 3),
            "kafka.partition.assignment.strategy=" + m_tally.assignment,
            "consumer.retry_backoff_min_ms=50", "consumer.retry_backoff_max_ms=1000"},
        environment(drop, {"CHAOS_PROCESS=" + name}), m_tally.logs + "/" + name + ".log"));
  }
  for (auto& c : m_relays) c->start("initial");
  for (auto& c : m_consumers) c->start("initial");
}

void Driver::progress(bool force) {
  if (!force && Clock::now() < m_next_progress) return;
  m_next_progress = Clock::now() + 5s;
  std::string db = "database down";
  if (m_pg == ServerState::up) db = m_monitor->status();
  std::vector<std::string> down;
  for (auto* pool : {&m_relays, &m_consumers}) {
    for (auto& c : *pool) {
      if (c->state() == Child::State::down) down.push_back(c->name() + " dead");
      if (c->state() == Child::State::stopped) down.push_back(c->name() + " stopped");
    }
  }
  if (m_broker != ServerState::up) {
    down.emplace_back(m_o.brokers == 3 ? fmt::format("broker {}", m_node) : "broker");
  }
  if (m_pg != ServerState::up) down.emplace_back("postgresql");
  say(fmt::format("committed {:>9}/{}  {}  faults {}/{}{}", group(m_ws.committed.load()),
                  group(m_o.work.messages), db, m_tally.faults_done, m_plan.size(),
                  down.empty() ? "" : fmt::format("  down: {}", fmt::join(down, ", "))));
}

void Driver::stop_pool(Pool& pool) {
  for (auto& c : pool) {
    const int code = c->terminate(20s);
    if (code != 0) {
      m_tally.unclean_stops.push_back(
          fmt::format("{} exited with code {} on SIGTERM", c->name(), code));
    }
  }
}

// Relays first: a relay's producer may still hold copies it delivers late (after a broker
// restart), past the drain check. Once no relay runs, the log no longer grows: the consumers
// are given time to read to its end before they are stopped too.
void Driver::stop_children() {
  stop_pool(m_relays);
  const auto deadline = Clock::now() + 60s;
  std::string why;
  while (!m_interrupted && Clock::now() < deadline && !m_monitor->drained(*m_kafka, why)) {
    std::this_thread::sleep_for(500ms);
  }
  stop_pool(m_consumers);
}

int Driver::run() {
  setup();
  const double window_to = m_o.work.write_seconds + 10;
  m_plan = make_plan(m_o.work.seed, m_o.faults, std::min(5.0, window_to / 2), window_to,
                     m_o.lease_ttl_ms / 1000.0, m_o.session_timeout_ms / 1000.0, m_o.brokers == 3,
                     m_o.pg_failover);
  std::cout << fmt::format(
                   "txbox chaos: seed {}, {} messages on {} keys, {} writers, {} relays, {} "
                   "consumers ({}), {} partitions on {}, {} faults, {} poison + {} oversize "
                   "injected, delivery {}\n"
                   "  started {} UTC; directory {} (logs in logs/)\n",
                   m_o.work.seed, group(m_o.work.messages), m_o.work.keys, m_o.work.writers,
                   m_o.relays, m_o.consumers, m_tally.assignment, m_o.partitions,
                   m_o.brokers == 3 ? "3 brokers (RF 3, min.insync.replicas 2)" : "1 broker",
                   m_plan.size(), m_o.work.poison, m_o.work.oversize,
                   m_o.exactly_once ? "exactly_once" : "at_least_once", utc_now(), m_o.dir)
            << std::flush;

  // Servers of our own, stopped by the guardian if we die.
  m_guardian = std::make_unique<Guardian>(*m_servers);
  pg_pair_setup();
  say("starting PostgreSQL and Kafka (scripts/servers.sh start)");
  if (!m_servers->run("start")) {
    std::cerr << "txbox_chaos: FAILED: the servers did not start:\n"
              << tail_file(m_servers->log(), 15);
    m_servers->run("stop");
    m_guardian->dismiss();
    return 3;
  }
  m_env = m_servers->endpoints();
  pg_pair_started();
  m_monitor = std::make_unique<Monitor>(m_env.at("TXBOX_TEST_PG"), m_o.work.topic, m_o.partitions,
                                        m_o.exactly_once ? m_env.at("TXBOX_TEST_KAFKA") : "");
  m_tally.servers_s = since_start();
  int rc = 3;
  try {
    create_test_schema(m_env.at("TXBOX_TEST_PG"), m_o.work.keys);
    m_kafka = std::make_unique<Kafka>(m_env.at("TXBOX_TEST_KAFKA"));
    m_kafka->create_topic(m_o.work.topic, m_o.partitions, m_o.brokers == 3 ? 3 : 1);
    start_children();
    say(fmt::format("servers up ({:.1f} s); {} relays and {} consumers started; writing",
                    m_tally.servers_s, m_o.relays, m_o.consumers));
    write_phase();
    const bool drain_ok = drain_phase();
    stop_children();
    const auto log = audit();
    // Where the consumers must have stopped: the end offsets; in exactly-once mode the offset
    // after each partition's last record (transaction markers take the offsets after it).
    auto ends = m_kafka->high_watermarks(m_o.work.topic, m_o.partitions, 10'000);
    if (m_o.exactly_once) ends = log ? std::optional(log->data_end) : std::nullopt;
    const Verdict v = verify(m_env.at("TXBOX_TEST_PG"), m_o.work.topic, ends);
    rc = report(m_o, m_tally, m_ws, v, log, drain_ok, since_start());
  } catch (const std::exception& e) {
    std::cerr << fmt::format("txbox_chaos: FAILED (seed {}): {}\n", m_o.work.seed, e.what());
    for (auto* pool : {&m_relays, &m_consumers}) {
      for (auto& c : *pool) c->terminate(5s);
    }
    rc = m_interrupted && m_infra_error.empty() ? 130 : 3;
  }
  m_monitor.reset();
  m_kafka.reset();
  if (m_server_thread_kafka.joinable()) m_server_thread_kafka.join();
  if (m_server_thread_pg.joinable()) m_server_thread_pg.join();
  const double t_stop = since_start();
  m_servers->run("stop");
  say(fmt::format("servers stopped ({:.1f} s)", since_start() - t_stop));
  m_guardian->dismiss();
  if (rc == 0 && !m_o.keep) {
    std::error_code ec;
    fs::remove_all(m_servers->dir() + "/kafka", ec);
    for (int n = 0; n <= 3; ++n)
      fs::remove_all(m_servers->dir() + "/kafka-" + std::to_string(n), ec);
  }
  return rc;
}

// The log audit, every process stopped: nullopt (and Tally::audit_error) when it failed.
std::optional<LogAudit> Driver::audit() {
  say("auditing the log (a plain read_committed consumer from the beginning)");
  const auto t0 = Clock::now();
  std::optional<LogAudit> out;
  try {
    // An open transaction of a killed relay aborts when its id is fenced or it times out.
    out = audit_log(m_env.at("TXBOX_TEST_KAFKA"), m_o.work.topic, m_o.partitions, 60,
                    120 + m_o.work.messages / 2000.0);
    say(log_line(*out));
  } catch (const std::exception& e) {
    m_tally.audit_error = e.what();
    say("log audit FAILED: " + m_tally.audit_error);
  }
  m_tally.audit_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

// Writes and faults: returns when the writers are done and every fault is restored; throws
// when interrupted, when a server does not come back, or when the writers gave up.
void Driver::write_phase() {
  m_t_writes = Clock::now();
  schedule_plan();
  std::vector<std::thread> writers;
  for (int w = 0; w < m_o.work.writers; ++w) {
    writers.emplace_back([this, w] {
      run_writer(m_o.work, w, m_env.at("TXBOX_TEST_PG"), m_ws, m_t_writes, m_interrupted);
    });
  }
  bool writes_done = false;
  const auto write_deadline =
      m_t_writes + std::chrono::seconds(static_cast<long>(m_o.work.write_seconds * 4 + 600));
  while (!m_interrupted && m_infra_error.empty()) {
    reap_children();
    poll_servers();
    handle_due(true);
    if (!writes_done && m_ws.done.load() == m_o.work.writers) {
      writes_done = true;
      m_tally.write_s = std::chrono::duration<double>(Clock::now() - m_t_writes).count();
      say(
          fmt::format("writers done: {} messages in {} transactions ({} errors recovered), "
                      "{:.1f} s",
                      group(m_ws.committed.load()), group(m_ws.transactions.load()),
                      group(m_ws.errors.load()), m_tally.write_s));
    }
    progress(false);
    if (writes_done && m_events.empty() && m_broker == ServerState::up && m_pg == ServerState::up) {
      break;
    }
    if (Clock::now() > write_deadline) {
      m_infra_error = "the writers did not finish in time (database unusable?)";
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  if (m_interrupted || !m_infra_error.empty()) {
    m_interrupted = true;  // stops the writers
  }
  for (auto& t : writers) t.join();
  {
    std::lock_guard lock(m_ws.mutex);
    if (!m_ws.fatal.empty() && m_infra_error.empty()) m_infra_error = m_ws.fatal;
  }
  if (m_interrupted || !m_infra_error.empty()) {
    throw std::runtime_error(m_infra_error.empty() ? "interrupted" : m_infra_error);
  }
}

// Drain: every fault restored, every process running. True when drained, twice in a row, a
// second apart; false when interrupted, stalled or out of time.
bool Driver::drain_phase() {
  say(fmt::format("all {} faults injected and restored; waiting for the pipeline to drain",
                  m_tally.faults_done));
  const auto t_drain = Clock::now();
  const auto drain_deadline =
      t_drain + std::chrono::seconds(static_cast<long>(m_o.drain_timeout_s));
  bool drain_ok = false;
  int stable = 0;
  std::string why, last_why;
  auto last_change = Clock::now();
  while (!m_interrupted && Clock::now() < drain_deadline) {
    reap_children();
    handle_due(false);
    // Twice in a row, a second apart: nothing still arriving.
    if (m_monitor->drained(*m_kafka, why)) {
      if (++stable >= 2) {
        drain_ok = true;
        break;
      }
    } else {
      stable = 0;
      if (why != last_why) {
        last_why = why;
        last_change = Clock::now();
      } else if (Clock::now() - last_change > std::chrono::seconds(m_o.stall_timeout_s)) {
        say(fmt::format("no progress for {} s", m_o.stall_timeout_s));
        break;
      }
    }
    progress(false);
    std::this_thread::sleep_for(1s);
  }
  m_tally.drain_s = std::chrono::duration<double>(Clock::now() - t_drain).count();
  if (!drain_ok) say("NOT DRAINED: " + why);
  return drain_ok;
}

}  // namespace chaos
