// The chaos driver's fault injection: the scheduled events (the planned faults, the
// restarts and SIGCONTs that end them), the servers started again in the background, and the
// children that exit by themselves.
#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <optional>
#include <pqxx/pqxx>

#include "driver.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace chaos {

using namespace std::chrono_literals;

void Driver::schedule_plan() {
  for (std::size_t i = 0; i < m_plan.size(); ++i) {
    m_events.push({m_t_writes + std::chrono::milliseconds(static_cast<long>(m_plan[i].at_s * 1000)),
                   Action::fault, i});
  }
}

void Driver::handle_due(bool stop_on_infra_error) {
  while (!m_events.empty() && m_events.top().at <= Clock::now() &&
         (!stop_on_infra_error || m_infra_error.empty())) {
    const Event e = m_events.top();
    m_events.pop();
    handle(e);
  }
}

std::optional<std::size_t> Driver::pick_child(const Pool& pool, std::uint64_t pick) {
  std::vector<std::size_t> eligible;
  for (std::size_t i = 0; i < pool.size(); ++i) {
    if (pool[i]->state() == Child::State::running) eligible.push_back(i);
  }
  if (eligible.empty()) return std::nullopt;
  return eligible[pick % eligible.size()];
}

void Driver::server_start_async(bool kafka, const std::string& cmd, const std::string& arg) {
  auto& result = kafka ? m_kafka_result : m_pg_result;
  auto& thread = kafka ? m_server_thread_kafka : m_server_thread_pg;
  if (thread.joinable()) thread.join();
  result = -1;
  (kafka ? m_broker : m_pg) = ServerState::starting;
  const std::string command = !cmd.empty() ? cmd : kafka ? "start-kafka" : "start-pg";
  thread = std::thread([this, command, arg, &result] {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (m_servers->run(command, arg)) {
        result = 0;
        return;
      }
      std::this_thread::sleep_for(2s);
    }
    result = 1;
  });
}

void Driver::poll_servers() {
  const auto check = [&](ServerState& st, std::atomic<int>& result, std::thread& t,
                         const char* what) {
    if (st != ServerState::starting || result == -1) return;
    t.join();
    if (result == 0) {
      st = ServerState::up;
      say(fmt::format("{} is up again", what));
    } else {
      m_infra_error = fmt::format("{} did not start again; see {}", what, m_servers->log());
    }
  };
  check(m_broker, m_kafka_result, m_server_thread_kafka, "the Kafka broker");
  check(m_pg, m_pg_result, m_server_thread_pg, "PostgreSQL");
}

std::string Driver::terminate_backends(std::uint64_t pick) {
  // Targets: one relay, one consumer, or all of them (writers included).
  const std::size_t choices = m_relays.size() + m_consumers.size() + 1;
  const std::size_t c = pick % choices;
  std::string pattern, label;
  if (c < m_relays.size()) {
    label = m_relays[c]->name();
    pattern = "chaos-" + label;
  } else if (c < m_relays.size() + m_consumers.size()) {
    label = m_consumers[c - m_relays.size()]->name();
    pattern = "chaos-" + label;
  } else {
    label = "every relay, consumer and writer";
    pattern = "chaos-%";
  }
  pqxx::connection admin(m_env.at("TXBOX_TEST_PG_ADMIN"));
  pqxx::nontransaction nt(admin);
  const auto r =
      pq::exec(nt,
               "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
               "WHERE application_name LIKE $1",
               pattern);
  const auto n = r[0][0].as<std::int64_t>();
  m_tally.terminated_backends += n;
  return fmt::format("pg_terminate_backend: {} backend(s) of {}", n, label);
}

void Driver::inject(std::size_t i) {
  const PlannedFault& f = m_plan[i];
  const auto later = [&](double s) {
    return Clock::now() + std::chrono::milliseconds(static_cast<long>(s * 1000));
  };
  const auto postpone = [&] {
    if (m_waited.insert(i).second) ++m_tally.postponed;
    m_events.push({Clock::now() + 500ms, Action::fault, i});
  };
  // A fault that can let a relay's leases expire under rows in flight (a relay stalled, the
  // database gone for longer than the ttl): the copies that relay had handed over may land
  // after another relay's newer messages (stale copies the report then excuses).
  const auto lease_risk = [&] {
    m_tally.lease_risks_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
  };
  const std::string n = fmt::format("fault {}/{}: ", m_tally.faults_done + 1, m_plan.size());
  switch (f.kind) {
    case Fault::relay_kill:
    case Fault::consumer_kill: {
      const bool relay = f.kind == Fault::relay_kill;
      auto& pool = relay ? m_relays : m_consumers;
      const auto idx = pick_child(pool, f.pick);
      if (!idx) return postpone();
      Child* c = pool[*idx].get();
      // A relay killed while a broker is stopped: its produce requests already in that broker's
      // socket are appended when the broker resumes, after the new owner's newer messages.
      // Kafka cannot fence them (no transactional.id at least once): the log's known window.
      if (relay && m_broker_paused) lease_risk();
      c->kill_now();
      m_events.push(
          {later(f.down_s), relay ? Action::restart_relay : Action::restart_consumer, *idx});
      say(n + fmt::format("SIGKILL {} (restart in {:.1f} s)", c->name(), f.down_s));
      break;
    }
    case Fault::relay_stop:
    case Fault::consumer_stop: {
      const bool relay = f.kind == Fault::relay_stop;
      auto& pool = relay ? m_relays : m_consumers;
      const auto idx = pick_child(pool, f.pick);
      if (!idx) return postpone();
      Child* c = pool[*idx].get();
      if (relay) lease_risk();
      c->signal(SIGSTOP);
      m_events.push({later(f.down_s), relay ? Action::cont_relay : Action::cont_consumer, *idx});
      say(n + fmt::format("SIGSTOP {} for {:.1f} s ({} {} ms)", c->name(), f.down_s,
                          relay ? "lease ttl" : "session timeout",
                          relay ? m_o.lease_ttl_ms : m_o.session_timeout_ms));
      break;
    }
    case Fault::broker_restart: {
      if (m_broker != ServerState::up) return postpone();
      if (!m_servers->run("stop-kafka", "KILL")) {
        m_infra_error = "could not kill the broker; see " + m_servers->log();
        return;
      }
      m_broker = ServerState::down;
      m_events.push({later(f.down_s), Action::start_broker, 0});
      say(n + fmt::format("kill -9 the Kafka broker (start again in {:.1f} s)", f.down_s));
      break;
    }
    case Fault::pg_restart: {
      if (m_pg != ServerState::up || !m_standby) return postpone();
      lease_risk();
      if (!m_servers->run("stop-pg", "immediate")) {
        m_infra_error = "could not stop PostgreSQL; see " + m_servers->log();
        return;
      }
      m_pg = ServerState::down;
      m_monitor->disconnect();
      m_events.push({later(f.down_s), Action::start_pg, 0});
      say(n + fmt::format("pg_ctl stop -m immediate (start again in {:.1f} s)", f.down_s));
      break;
    }
    case Fault::pg_failover:
      if (m_pg != ServerState::up || !m_standby) return postpone();
      lease_risk();
      if (!pg_fail_over(n, f.down_s)) return;
      break;
    case Fault::conn_reset: {
      if (m_pg != ServerState::up) return postpone();
      try {
        say(n + terminate_backends(f.pick));
      } catch (const std::exception&) {
        return postpone();
      }
      break;
    }
    case Fault::leader_kill:
    case Fault::broker_pause:
    case Fault::disk_loss:
      // One broker at a time, and only when every replica is in sync: replication factor 3
      // with min.insync.replicas 2 survives one broker failure, not two at once.
      if (m_broker != ServerState::up || !m_kafka->fully_replicated(m_o.work.topic, 2000)) {
        return postpone();
      }
      inject_node_fault(f, n);
      if (!m_infra_error.empty()) return;
      break;
  }
  ++m_tally.faults_done;
  ++m_tally.fault_counts[static_cast<std::size_t>(f.kind)];
}

void Driver::inject_node_fault(const PlannedFault& f, const std::string& n) {
  const auto later = std::chrono::milliseconds(static_cast<long>(f.down_s * 1000));
  if (f.kind == Fault::leader_kill) {
    const int partition = static_cast<int>(f.pick % static_cast<std::uint64_t>(m_o.partitions));
    m_node = m_kafka->leader(m_o.work.topic, partition, 2000);
    if (m_node < 1) {
      m_infra_error = fmt::format("partition {} has no leader to kill", partition);
      return;
    }
    if (!m_servers->run("node-kill", std::to_string(m_node))) {
      m_infra_error = "could not kill a broker; see " + m_servers->log();
      return;
    }
    m_broker = ServerState::down;
    m_events.push({Clock::now() + later, Action::start_node, 0});
    say(n + fmt::format("kill -9 broker {} (leader of partition {}; start again in {:.1f} s)",
                        m_node, partition, f.down_s));
  } else if (f.kind == Fault::broker_pause) {
    m_node = 1 + static_cast<int>(f.pick % 3);
    if (!m_servers->run("node-pause", std::to_string(m_node))) {
      m_infra_error = "could not pause a broker; see " + m_servers->log();
      return;
    }
    m_broker = ServerState::down;
    m_broker_paused = true;
    m_events.push({Clock::now() + later, Action::resume_node, 0});
    say(n + fmt::format("SIGSTOP broker {} for {:.1f} s", m_node, f.down_s));
  } else {
    m_node = 1 + static_cast<int>(f.pick % 3);
    say(n +
        fmt::format("broker {} loses its disk (crash, data wiped, formatted, started)", m_node));
    server_start_async(true, "node-wipe", std::to_string(m_node));
  }
}

void Driver::handle(const Event& e) {
  switch (e.action) {
    case Action::fault:
      inject(e.index);
      break;
    case Action::restart_relay:
      if (m_relays[e.index]->state() == Child::State::down) {
        m_relays[e.index]->start("after SIGKILL");
        say("restarted " + m_relays[e.index]->name());
      }
      break;
    case Action::restart_consumer:
      if (m_consumers[e.index]->state() == Child::State::down) {
        m_consumers[e.index]->start("after SIGKILL");
        say("restarted " + m_consumers[e.index]->name());
      }
      break;
    case Action::cont_relay:
      m_relays[e.index]->signal(SIGCONT);
      say("SIGCONT " + m_relays[e.index]->name());
      break;
    case Action::cont_consumer:
      m_consumers[e.index]->signal(SIGCONT);
      say("SIGCONT " + m_consumers[e.index]->name());
      break;
    case Action::start_broker:
      say("starting the Kafka broker again");
      server_start_async(true);
      break;
    case Action::start_pg:
      say("starting PostgreSQL again");
      server_start_async(false);
      break;
    case Action::start_node:
      say(fmt::format("starting broker {} again", m_node));
      server_start_async(true, "node-start", std::to_string(m_node));
      break;
    case Action::resume_node:
      if (!m_servers->run("node-resume", std::to_string(m_node))) {
        m_infra_error = "could not resume a broker; see " + m_servers->log();
        break;
      }
      m_broker = ServerState::up;
      m_broker_paused = false;
      say(fmt::format("SIGCONT broker {}", m_node));
      break;
    case Action::attach_standby:
      pg_attach_standby();
      break;
  }
}

void Driver::reap_children() {
  const auto check = [&](Pool& pool, Action restart) {
    for (std::size_t i = 0; i < pool.size(); ++i) {
      if (auto code = pool[i]->reap()) {
        // Nothing the driver did ends these processes: a daemon that exits by itself under
        // these faults is a finding. Restart it, as a supervisor would, and report it.
        const std::string what = fmt::format("{} exited by itself with code {} (start #{})",
                                             pool[i]->name(), *code, pool[i]->starts());
        say("UNEXPECTED: " + what + "; its log ends with:\n" + tail_file(pool[i]->log(), 8));
        m_tally.unexpected_exits.push_back(what);
        m_events.push({Clock::now() + 1s, restart, i});
      }
    }
  };
  check(m_relays, Action::restart_relay);
  check(m_consumers, Action::restart_consumer);
}

}  // namespace chaos
