// txbox_chaos: fault injection against the whole pipeline, on servers of its own.
//
// It starts a throwaway PostgreSQL and Kafka broker (scripts/servers.sh, in a directory of
// its own, so that killing them disturbs no other test), relays (txbox-relay) and consumers
// (txbox_chaos_projector, on txbox::inbox). Writer threads commit messages with a sequence
// number per key (txbox::outbox, and a row in chaos.sent in the same transaction), while a
// seeded schedule kills, stops and restarts relays, consumers, the broker and PostgreSQL and
// terminates backends. Then it waits for the pipeline to drain, stops everything and checks:
//   - every committed message applied exactly once (chaos.applied has no unique constraint,
//     so a second effect is a second row; lost = committed without a row);
//   - per key, the effects are in order: each applied row records the key's sequence number
//     before it, read under a row lock, i.e. in commit order; a violation is a row whose
//     seq is not prev_seq + 1 (a key's effects must be 1, 2, 3, ... with no gap, repeat or
//     step back, whatever the relays re-sent: the inbox absorbs re-sends);
//   - the outbox drained, the consumers at the end of every partition;
//   - dead letters exactly where injected: poison messages (the handler always throws) in
//     txbox.inbox_dead, oversize rows in txbox.outbox_dead, nothing else.
// Prints a table and exits 1 on any violation, naming the seed to replay the schedule.
//
//   txbox_chaos [--seed N] [--messages N] [--faults N] [--write-seconds S] ... (--help)
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <queue>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "plan.hpp"
#include "process.hpp"
#include "servers.hpp"
#include "workload.hpp"

namespace chaos {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// Options

struct Options {
  Workload work;
  bool seed_given = false;
  int faults = 30;
  int relays = 3;
  int consumers = 2;
  int partitions = 6;
  double drain_timeout_s = 300;
  int stall_timeout_s = 90;  // the drain gives up when nothing moved for this long
  int lease_ttl_ms = 4000;
  int session_timeout_ms = 3000;
  // A relay's produce -> ack -> delete cycle lasts at least linger.ms: long enough that
  // connection resets and restarts land on batches in flight, whose rows are then re-sent.
  int relay_linger_ms = 100;
  std::string dir;
  bool keep = false;
};

[[noreturn]] void usage(int code) {
  std::cout << R"(usage: txbox_chaos [options]
  --seed N             schedule seed (default: random; printed, and named on failure)
  --messages N         messages to commit (default 20000), spread over --keys keys
  --faults N           faults to inject (default 30)
  --write-seconds S    pace the writers to finish in about S seconds (default 60); the
                       faults fall between 5 s and S + 10 s after the writes start
  --keys N             ordering keys (default 200)
  --writers N          writer threads (default 4)
  --relays N           txbox-relay processes (default 3)
  --consumers N        projector processes, one consumer group (default 2)
  --partitions N       partitions of the topic (default 6)
  --poison N           poison messages injected (default 3)
  --oversize N         oversize outbox rows injected (default 2)
  --lease-ttl-ms N     relay lease (default 4000)
  --session-timeout-ms N  consumer session timeout (default 3000)
  --relay-linger-ms N  the relays' kafka linger.ms (default 100: batches stay in flight
                       long enough for faults to land on them)
  --drain-timeout S    how long to wait for the pipeline to drain (default 300)
  --stall-timeout S    stop waiting when the drain made no progress for S s (default 90)
  --dir DIR            servers, logs (default: a new /tmp/txbox-chaos.XXXXXX)
  --keep               keep the broker's data after a pass (always kept after a failure)
Exit: 0 pass, 1 a violation, 2 usage, 3 the servers or the setup failed.
)";
  std::exit(code);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "txbox_chaos: " << a << " needs a value\n";
        usage(2);
      }
      return argv[++i];
    };
    const auto number = [&](long lo, long hi) -> long {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < lo || n > hi) {
        std::cerr << "txbox_chaos: " << a << " wants an integer in [" << lo << ", " << hi
                  << "], not '" << v << "'\n";
        usage(2);
      }
      return n;
    };
    if (a == "--help" || a == "-h") {
      usage(0);
    } else if (a == "--seed") {
      const std::string v = value();
      char* end = nullptr;
      o.work.seed = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end) usage(2);
      o.seed_given = true;
    } else if (a == "--messages") {
      o.work.messages = static_cast<int>(number(1, 100'000'000));
    } else if (a == "--faults") {
      o.faults = static_cast<int>(number(0, 100'000));
    } else if (a == "--write-seconds") {
      o.work.write_seconds = static_cast<double>(number(1, 86'400));
    } else if (a == "--keys") {
      o.work.keys = static_cast<int>(number(1, 100'000));
    } else if (a == "--writers") {
      o.work.writers = static_cast<int>(number(1, 64));
    } else if (a == "--relays") {
      o.relays = static_cast<int>(number(1, 16));
    } else if (a == "--consumers") {
      o.consumers = static_cast<int>(number(1, 16));
    } else if (a == "--partitions") {
      o.partitions = static_cast<int>(number(1, 256));
    } else if (a == "--poison") {
      o.work.poison = static_cast<int>(number(0, 100));
    } else if (a == "--oversize") {
      o.work.oversize = static_cast<int>(number(0, 100));
    } else if (a == "--lease-ttl-ms") {
      o.lease_ttl_ms = static_cast<int>(number(1000, 600'000));
    } else if (a == "--session-timeout-ms") {
      o.session_timeout_ms = static_cast<int>(number(1000, 600'000));
    } else if (a == "--relay-linger-ms") {
      o.relay_linger_ms = static_cast<int>(number(0, 10'000));
    } else if (a == "--drain-timeout") {
      o.drain_timeout_s = static_cast<double>(number(10, 86'400));
    } else if (a == "--stall-timeout") {
      o.stall_timeout_s = static_cast<int>(number(10, 86'400));
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--keep") {
      o.keep = true;
    } else {
      std::cerr << "txbox_chaos: unknown option " << a << "\n";
      usage(2);
    }
  }
  if (o.work.keys < o.work.writers) o.work.writers = o.work.keys;
  if (!o.seed_given) o.work.seed = std::random_device{}() % 1'000'000'000ULL;
  return o;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string group(std::int64_t n) {  // 12345 -> 12,345
  std::string s = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return (n < 0 ? "-" : "") + out;
}

// ---------------------------------------------------------------------------------------
// Interruption (SIGINT/SIGTERM): stop injecting, clean up, exit 130.

std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) {
  g_interrupted = true;
}

// ---------------------------------------------------------------------------------------
// The driver.

class Driver {
 public:
  explicit Driver(Options o) : m_o(std::move(o)) {}

  int run();

 private:
  enum class ServerState { up, down, starting };
  enum class Action {
    fault,
    restart_relay,
    cont_relay,
    restart_consumer,
    cont_consumer,
    start_broker,
    start_pg
  };
  struct Event {
    Clock::time_point at;
    Action action;
    std::size_t index;  // plan index for a fault; child index for the others
    bool operator>(const Event& other) const { return at > other.at; }
  };

  double since_start() const {
    return std::chrono::duration<double>(Clock::now() - m_t_start).count();
  }
  void say(const std::string& line) {
    std::cout << fmt::format("[{:7.1f}s] {}\n", since_start(), line) << std::flush;
  }

  void setup();
  void start_children();
  void inject(std::size_t plan_index);
  void handle(const Event& e);
  void reap_children();
  void poll_servers();
  void server_start_async(bool kafka);
  std::string terminate_backends(std::uint64_t pick);
  void progress(bool force);
  bool drained(std::string& why);
  void stop_children();
  int report(const Verdict& v, bool drain_ok);
  Child* pick_child(std::vector<std::unique_ptr<Child>>& pool, std::uint64_t pick);

  Options m_o;
  Clock::time_point m_t_start = Clock::now();
  Clock::time_point m_t_writes{};
  double m_servers_s = 0, m_write_s = 0, m_drain_s = 0;
  std::unique_ptr<Servers> m_servers;
  std::unique_ptr<Guardian> m_guardian;
  std::map<std::string, std::string> m_env;
  std::string m_logs;
  std::unique_ptr<Kafka> m_kafka;
  std::vector<std::unique_ptr<Child>> m_relays, m_consumers;
  std::vector<PlannedFault> m_plan;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> m_events;
  std::array<int, k_fault_kinds> m_fault_counts{};
  int m_faults_done = 0;
  int m_postponed = 0;             // faults that waited for an eligible target
  std::set<std::size_t> m_waited;  // their plan indices
  ServerState m_broker = ServerState::up, m_pg = ServerState::up;
  std::thread m_server_thread_kafka, m_server_thread_pg;
  std::atomic<int> m_kafka_result{-1}, m_pg_result{-1};  // -1 running, 0 ok, 1 failed
  std::vector<std::string> m_unexpected_exits;
  std::vector<std::string> m_unclean_stops;
  std::string m_infra_error;
  WriterStats m_ws;
  std::unique_ptr<pqxx::connection> m_monitor;
  Clock::time_point m_next_progress{};
  std::int64_t m_terminated_backends = 0;
  std::string m_assignment;
};

void Driver::setup() {
  std::error_code ec;
  if (m_o.dir.empty()) {
    char tmpl[] = "/tmp/txbox-chaos.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    m_o.dir = tmpl;
  }
  fs::create_directories(m_o.dir);
  m_o.dir = fs::canonical(m_o.dir).string();
  m_logs = m_o.dir + "/logs";
  fs::remove_all(m_logs, ec);
  fs::create_directories(m_logs);
  m_servers = std::make_unique<Servers>(m_o.dir + "/servers", m_logs + "/servers.log");
  m_assignment = m_o.work.seed % 2 == 0 ? "cooperative-sticky" : "range,roundrobin";
}

void Driver::start_children() {
  const std::string pg = m_env.at("TXBOX_TEST_PG");
  const std::string kafka = m_env.at("TXBOX_TEST_KAFKA");
  // Nothing from the caller's TXBOX_* settings: the schedule alone decides what runs.
  const std::vector<std::string> drop = {"TXBOX_*"};
  for (int i = 1; i <= m_o.relays; ++i) {
    const std::string name = fmt::format("relay-{}", i);
    m_relays.push_back(std::make_unique<Child>(
        name,
        std::vector<std::string>{RELAY_BIN, "--database-url",
                                 pg + " application_name=chaos-" + name,
                                 "--kafka-bootstrap-servers", kafka, "--name", name},
        environment(drop, {"TXBOX_RELAY_LEASE_TTL_MS=" + std::to_string(m_o.lease_ttl_ms),
                           "TXBOX_KAFKA_LINGER_MS=" + std::to_string(m_o.relay_linger_ms)}),
        m_logs + "/" + name + ".log"));
  }
  for (int i = 1; i <= m_o.consumers; ++i) {
    const std::string name = fmt::format("consumer-{}", i);
    m_consumers.push_back(std::make_unique<Child>(
        name,
        std::vector<std::string>{
            PROJECTOR_BIN, std::string("consumer.name=") + k_consumer,
            std::string("consumer.topics=") + k_topic,
            "database.url=" + pg + " application_name=chaos-" + name,
            "kafka.bootstrap.servers=" + kafka,
            "kafka.session.timeout.ms=" + std::to_string(m_o.session_timeout_ms),
            "kafka.heartbeat.interval.ms=" + std::to_string(m_o.session_timeout_ms / 3),
            "kafka.partition.assignment.strategy=" + m_assignment,
            "consumer.retry_backoff_min_ms=50", "consumer.retry_backoff_max_ms=1000"},
        environment(drop, {"CHAOS_PROCESS=" + name}), m_logs + "/" + name + ".log"));
  }
  for (auto& c : m_relays) c->start("initial");
  for (auto& c : m_consumers) c->start("initial");
}

Child* Driver::pick_child(std::vector<std::unique_ptr<Child>>& pool, std::uint64_t pick) {
  std::vector<Child*> eligible;
  for (auto& c : pool) {
    if (c->state() == Child::State::running) eligible.push_back(c.get());
  }
  if (eligible.empty()) return nullptr;
  return eligible[pick % eligible.size()];
}

void Driver::server_start_async(bool kafka) {
  auto& result = kafka ? m_kafka_result : m_pg_result;
  auto& thread = kafka ? m_server_thread_kafka : m_server_thread_pg;
  if (thread.joinable()) thread.join();
  result = -1;
  (kafka ? m_broker : m_pg) = ServerState::starting;
  thread = std::thread([this, kafka, &result] {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (m_servers->run(kafka ? "start-kafka" : "start-pg")) {
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
  const auto r = nt.exec_params(
      "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE application_name LIKE $1",
      pattern);
  const auto n = r[0][0].as<std::int64_t>();
  m_terminated_backends += n;
  return fmt::format("pg_terminate_backend: {} backend(s) of {}", n, label);
}

void Driver::inject(std::size_t i) {
  const PlannedFault& f = m_plan[i];
  const auto later = [&](double s) {
    return Clock::now() + std::chrono::milliseconds(static_cast<long>(s * 1000));
  };
  const auto postpone = [&] {
    if (m_waited.insert(i).second) ++m_postponed;
    m_events.push({Clock::now() + 500ms, Action::fault, i});
  };
  const std::string n = fmt::format("fault {}/{}: ", m_faults_done + 1, m_plan.size());
  switch (f.kind) {
    case Fault::relay_kill:
    case Fault::consumer_kill: {
      const bool relay = f.kind == Fault::relay_kill;
      auto& pool = relay ? m_relays : m_consumers;
      Child* c = pick_child(pool, f.pick);
      if (!c) return postpone();
      c->kill_now();
      const auto idx = static_cast<std::size_t>(
          std::find_if(pool.begin(), pool.end(), [&](auto& p) { return p.get() == c; }) -
          pool.begin());
      m_events.push(
          {later(f.down_s), relay ? Action::restart_relay : Action::restart_consumer, idx});
      say(n + fmt::format("SIGKILL {} (restart in {:.1f} s)", c->name(), f.down_s));
      break;
    }
    case Fault::relay_stop:
    case Fault::consumer_stop: {
      const bool relay = f.kind == Fault::relay_stop;
      auto& pool = relay ? m_relays : m_consumers;
      Child* c = pick_child(pool, f.pick);
      if (!c) return postpone();
      c->signal(SIGSTOP);
      const auto idx = static_cast<std::size_t>(
          std::find_if(pool.begin(), pool.end(), [&](auto& p) { return p.get() == c; }) -
          pool.begin());
      m_events.push({later(f.down_s), relay ? Action::cont_relay : Action::cont_consumer, idx});
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
      if (m_pg != ServerState::up) return postpone();
      if (!m_servers->run("stop-pg", "immediate")) {
        m_infra_error = "could not stop PostgreSQL; see " + m_servers->log();
        return;
      }
      m_pg = ServerState::down;
      m_monitor.reset();
      m_events.push({later(f.down_s), Action::start_pg, 0});
      say(n + fmt::format("pg_ctl stop -m immediate (start again in {:.1f} s)", f.down_s));
      break;
    }
    case Fault::conn_reset: {
      if (m_pg != ServerState::up) return postpone();
      try {
        say(n + terminate_backends(f.pick));
      } catch (const std::exception&) {
        return postpone();
      }
      break;
    }
  }
  ++m_faults_done;
  ++m_fault_counts[static_cast<std::size_t>(f.kind)];
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
  }
}

void Driver::reap_children() {
  const auto check = [&](std::vector<std::unique_ptr<Child>>& pool, Action restart) {
    for (std::size_t i = 0; i < pool.size(); ++i) {
      if (auto code = pool[i]->reap()) {
        // Nothing the driver did ends these processes: a daemon that exits by itself under
        // these faults is a finding. Restart it, as a supervisor would, and report it.
        const std::string what = fmt::format("{} exited by itself with code {} (start #{})",
                                             pool[i]->name(), *code, pool[i]->starts());
        say("UNEXPECTED: " + what + "; its log ends with:\n" + tail_file(pool[i]->log(), 8));
        m_unexpected_exits.push_back(what);
        m_events.push({Clock::now() + 1s, restart, i});
      }
    }
  };
  check(m_relays, Action::restart_relay);
  check(m_consumers, Action::restart_consumer);
}

void Driver::progress(bool force) {
  if (!force && Clock::now() < m_next_progress) return;
  m_next_progress = Clock::now() + 5s;
  std::string db = "database down";
  if (m_pg == ServerState::up) {
    try {
      if (!m_monitor) m_monitor = std::make_unique<pqxx::connection>(m_env.at("TXBOX_TEST_PG"));
      pqxx::nontransaction nt(*m_monitor);
      const auto r = nt.exec(
          "SELECT (SELECT count(*) FROM txbox.outbox), "
          "(SELECT coalesce(sum(applied), 0) FROM chaos.key_state)");
      db = fmt::format("outbox {:>7}  applied {:>9}", group(r[0][0].as<std::int64_t>()),
                       group(r[0][1].as<std::int64_t>()));
    } catch (const std::exception&) {
      m_monitor.reset();
      db = "database unreachable";
    }
  }
  std::vector<std::string> down;
  for (auto* pool : {&m_relays, &m_consumers}) {
    for (auto& c : *pool) {
      if (c->state() == Child::State::down) down.push_back(c->name() + " dead");
      if (c->state() == Child::State::stopped) down.push_back(c->name() + " stopped");
    }
  }
  if (m_broker != ServerState::up) down.emplace_back("broker");
  if (m_pg != ServerState::up) down.emplace_back("postgresql");
  say(fmt::format("committed {:>9}/{}  {}  faults {}/{}{}", group(m_ws.committed.load()),
                  group(m_o.work.messages), db, m_faults_done, m_plan.size(),
                  down.empty() ? "" : fmt::format("  down: {}", fmt::join(down, ", "))));
}

// The pipeline is drained when the outbox is empty and every partition's stored next offset
// is its end offset. Checked while every process runs and both servers are up.
bool Driver::drained(std::string& why) {
  try {
    if (!m_monitor) m_monitor = std::make_unique<pqxx::connection>(m_env.at("TXBOX_TEST_PG"));
    pqxx::nontransaction nt(*m_monitor);
    const auto outbox = nt.exec("SELECT count(*) FROM txbox.outbox")[0][0].as<std::int64_t>();
    if (outbox > 0) {
      why = fmt::format("{} row(s) in the outbox", outbox);
      return false;
    }
    const auto hw = m_kafka->high_watermarks(k_topic, m_o.partitions, 5000);
    if (!hw) {
      why = "the broker does not answer";
      return false;
    }
    std::map<int, std::int64_t> stored;
    for (const auto& row : nt.exec_params(
             "SELECT \"partition\", next_offset FROM txbox.inbox_offsets WHERE consumer = $1 "
             "AND topic = $2",
             k_consumer, k_topic)) {
      stored[row[0].as<int>()] = row[1].as<std::int64_t>();
    }
    std::int64_t behind = 0;
    for (int p = 0; p < m_o.partitions; ++p) {
      behind += (*hw)[static_cast<std::size_t>(p)] - (stored.contains(p) ? stored[p] : 0);
    }
    if (behind != 0) {
      why = fmt::format("consumers {} record(s) behind", behind);
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    m_monitor.reset();
    why = e.what();
    return false;
  }
}

void Driver::stop_children() {
  for (auto* pool : {&m_relays, &m_consumers}) {
    for (auto& c : *pool) {
      const int code = c->terminate(20s);
      if (code != 0) {
        m_unclean_stops.push_back(
            fmt::format("{} exited with code {} on SIGTERM", c->name(), code));
      }
    }
  }
}

int Driver::run() {
  setup();
  const double window_to = m_o.work.write_seconds + 10;
  m_plan = make_plan(m_o.work.seed, m_o.faults, std::min(5.0, window_to / 2), window_to,
                     m_o.lease_ttl_ms / 1000.0, m_o.session_timeout_ms / 1000.0);
  std::cout << fmt::format(
                   "txbox chaos: seed {}, {} messages on {} keys, {} writers, {} relays, {} "
                   "consumers ({}), {} partitions, {} faults, {} poison + {} oversize injected\n"
                   "  started {} UTC; directory {} (logs in logs/)\n",
                   m_o.work.seed, group(m_o.work.messages), m_o.work.keys, m_o.work.writers,
                   m_o.relays, m_o.consumers, m_assignment, m_o.partitions, m_plan.size(),
                   m_o.work.poison, m_o.work.oversize, utc_now(), m_o.dir)
            << std::flush;

  // Servers of our own, stopped by the guardian if we die.
  m_guardian = std::make_unique<Guardian>(*m_servers);
  say("starting PostgreSQL and Kafka (scripts/servers.sh start)");
  if (!m_servers->run("start")) {
    std::cerr << "txbox_chaos: FAILED: the servers did not start:\n"
              << tail_file(m_servers->log(), 15);
    m_servers->run("stop");
    m_guardian->dismiss();
    return 3;
  }
  m_env = m_servers->endpoints();
  m_servers_s = since_start();
  int rc = 3;
  try {
    create_test_schema(m_env.at("TXBOX_TEST_PG"), m_o.work.keys);
    m_kafka = std::make_unique<Kafka>(m_env.at("TXBOX_TEST_KAFKA"));
    m_kafka->create_topic(k_topic, m_o.partitions);
    start_children();
    say(fmt::format("servers up ({:.1f} s); {} relays and {} consumers started; writing",
                    m_servers_s, m_o.relays, m_o.consumers));

    // Writes and faults.
    m_t_writes = Clock::now();
    for (std::size_t i = 0; i < m_plan.size(); ++i) {
      m_events.push(
          {m_t_writes + std::chrono::milliseconds(static_cast<long>(m_plan[i].at_s * 1000)),
           Action::fault, i});
    }
    std::vector<std::thread> writers;
    for (int w = 0; w < m_o.work.writers; ++w) {
      writers.emplace_back([this, w] {
        run_writer(m_o.work, w, m_env.at("TXBOX_TEST_PG"), m_ws, m_t_writes, g_interrupted);
      });
    }
    bool writes_done = false;
    const auto write_deadline =
        m_t_writes + std::chrono::seconds(static_cast<long>(m_o.work.write_seconds * 4 + 600));
    while (!g_interrupted && m_infra_error.empty()) {
      reap_children();
      poll_servers();
      while (!m_events.empty() && m_events.top().at <= Clock::now() && m_infra_error.empty()) {
        const Event e = m_events.top();
        m_events.pop();
        handle(e);
      }
      if (!writes_done && m_ws.done.load() == m_o.work.writers) {
        writes_done = true;
        m_write_s = std::chrono::duration<double>(Clock::now() - m_t_writes).count();
        say(
            fmt::format("writers done: {} messages in {} transactions ({} errors recovered), "
                        "{:.1f} s",
                        group(m_ws.committed.load()), group(m_ws.transactions.load()),
                        group(m_ws.errors.load()), m_write_s));
      }
      progress(false);
      if (writes_done && m_events.empty() && m_broker == ServerState::up &&
          m_pg == ServerState::up) {
        break;
      }
      if (Clock::now() > write_deadline) {
        m_infra_error = "the writers did not finish in time (database unusable?)";
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (g_interrupted || !m_infra_error.empty()) {
      g_interrupted = true;  // stops the writers
    }
    for (auto& t : writers) t.join();
    {
      std::lock_guard lock(m_ws.mutex);
      if (!m_ws.fatal.empty() && m_infra_error.empty()) m_infra_error = m_ws.fatal;
    }
    if (g_interrupted || !m_infra_error.empty()) {
      throw std::runtime_error(m_infra_error.empty() ? "interrupted" : m_infra_error);
    }

    // Drain: every fault restored, every process running.
    say(fmt::format("all {} faults injected and restored; waiting for the pipeline to drain",
                    m_faults_done));
    const auto t_drain = Clock::now();
    const auto drain_deadline =
        t_drain + std::chrono::seconds(static_cast<long>(m_o.drain_timeout_s));
    bool drain_ok = false;
    int stable = 0;
    std::string why, last_why;
    auto last_change = Clock::now();
    while (!g_interrupted && Clock::now() < drain_deadline) {
      reap_children();
      while (!m_events.empty() && m_events.top().at <= Clock::now()) {
        const Event e = m_events.top();
        m_events.pop();
        handle(e);
      }
      // Twice in a row, a second apart: nothing still arriving.
      if (drained(why)) {
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
    m_drain_s = std::chrono::duration<double>(Clock::now() - t_drain).count();
    if (!drain_ok) say("NOT DRAINED: " + why);
    stop_children();
    const auto hw = m_kafka->high_watermarks(k_topic, m_o.partitions, 10'000);
    const Verdict v = verify(m_env.at("TXBOX_TEST_PG"), hw);
    rc = report(v, drain_ok);
  } catch (const std::exception& e) {
    std::cerr << fmt::format("txbox_chaos: FAILED (seed {}): {}\n", m_o.work.seed, e.what());
    for (auto* pool : {&m_relays, &m_consumers}) {
      for (auto& c : *pool) c->terminate(5s);
    }
    rc = g_interrupted && m_infra_error.empty() ? 130 : 3;
  }
  m_monitor.reset();
  m_kafka.reset();
  if (m_server_thread_kafka.joinable()) m_server_thread_kafka.join();
  if (m_server_thread_pg.joinable()) m_server_thread_pg.join();
  m_servers->run("stop");
  m_guardian->dismiss();
  if (rc == 0 && !m_o.keep) {
    std::error_code ec;
    fs::remove_all(m_servers->dir() + "/kafka", ec);
  }
  return rc;
}

int Driver::report(const Verdict& v, bool drain_ok) {
  const double wall = since_start();
  const std::int64_t absorbed = v.kafka_records >= 0 ? v.kafka_records - v.inbox_rows : -1;
  const bool consumed_all = v.kafka_records >= 0 && v.consumed == v.kafka_records;
  std::vector<std::string> violations;
  const auto check = [&](bool bad, const std::string& what) {
    if (bad) violations.push_back(what);
  };
  check(v.committed != m_o.work.messages || v.poison != m_o.work.poison ||
            v.oversize != m_o.work.oversize,
        fmt::format("the writers committed {} + {} + {} messages, not {} + {} + {}", v.committed,
                    v.poison, v.oversize, m_o.work.messages, m_o.work.poison, m_o.work.oversize));
  check(v.lost > 0, fmt::format("{} committed message(s) never applied", v.lost));
  check(v.duplicate_effects > 0, fmt::format("{} duplicate effect(s)", v.duplicate_effects));
  check(v.order_violations > 0, fmt::format("{} per-key order violation(s)", v.order_violations));
  check(v.phantom > 0, fmt::format("{} effect(s) of no committed message", v.phantom));
  check(v.outbox_left > 0, fmt::format("{} row(s) left in the outbox", v.outbox_left));
  check(v.inbox_dead_unexpected + v.outbox_dead_unexpected > 0,
        fmt::format("{} unexpected dead letter(s)",
                    v.inbox_dead_unexpected + v.outbox_dead_unexpected));
  check(v.poison_missing + v.oversize_missing > 0,
        fmt::format("{} injected bad message(s) not dead-lettered",
                    v.poison_missing + v.oversize_missing));
  check(!consumed_all,
        fmt::format("consumers stopped at {} of {} Kafka records", v.consumed, v.kafka_records));
  check(!drain_ok, "the pipeline did not drain (stalled, or the drain timeout passed)");
  check(!m_unexpected_exits.empty(),
        fmt::format("{} unexpected process exit(s)", m_unexpected_exits.size()));
  check(!m_unclean_stops.empty(),
        fmt::format("{} process(es) did not stop cleanly on SIGTERM", m_unclean_stops.size()));

  const auto row = [](const std::string& label, const std::string& value,
                      const std::string& note = {}) {
    std::cout << fmt::format("  {:<34}{:>12}{}\n", label, value, note.empty() ? "" : "   " + note);
  };
  std::cout << "\n"
            << fmt::format("txbox chaos result — seed {}, {}\n", m_o.work.seed,
                           fmt::format("{} keys, {} writers, {} relays, {} consumers ({}), {} "
                                       "partitions",
                                       m_o.work.keys, m_o.work.writers, m_o.relays, m_o.consumers,
                                       m_assignment, m_o.partitions));
  row("messages committed", group(v.committed),
      fmt::format("+ {} poison, {} oversize injected", v.poison, v.oversize));
  row("records in Kafka", v.kafka_records >= 0 ? group(v.kafka_records) : "?");
  row("faults injected", group(m_faults_done),
      m_postponed > 0 ? fmt::format("{} waited for an eligible target", m_postponed) : "");
  for (std::size_t k = 0; k < k_fault_kinds; ++k) {
    row("  " + std::string(fault_name(static_cast<Fault>(k))), group(m_fault_counts[k]));
  }
  row("  backends terminated", group(m_terminated_backends));
  row("lost", group(v.lost));
  row("duplicate effects", group(v.duplicate_effects));
  row("order violations", group(v.order_violations));
  row("phantom effects", group(v.phantom));
  row("duplicates absorbed by the inbox", absorbed >= 0 ? group(absorbed) : "?",
      "Kafka records - distinct messages consumed");
  row("outbox left", group(v.outbox_left));
  row("inbox dead letters", group(v.inbox_dead),
      fmt::format("{} poison injected, {} unexpected", v.poison, v.inbox_dead_unexpected));
  row("outbox dead letters", group(v.outbox_dead),
      fmt::format("{} oversize injected, {} unexpected", v.oversize, v.outbox_dead_unexpected));
  row("unexpected process exits", group(static_cast<std::int64_t>(m_unexpected_exits.size())));
  row("writer errors recovered", group(m_ws.errors.load()),
      fmt::format("{} transactions committed", group(m_ws.transactions.load())));
  row("wall time", fmt::format("{:.1f} s", wall),
      fmt::format("servers {:.1f} s, writing {:.1f} s, drain {:.1f} s", m_servers_s, m_write_s,
                  m_drain_s));
  for (const auto& e : m_unexpected_exits) std::cout << "  exit: " << e << "\n";
  for (const auto& e : m_unclean_stops) std::cout << "  stop: " << e << "\n";
  for (const auto& d : v.details) std::cout << d << "\n";
  const std::string replay =
      fmt::format("txbox_chaos --seed {} --messages {} --faults {} --write-seconds {}",
                  m_o.work.seed, m_o.work.messages, m_o.faults, m_o.work.write_seconds);
  if (violations.empty()) {
    std::cout << fmt::format("PASS (seed {}; replay: {})\n", m_o.work.seed, replay);
    return 0;
  }
  std::cout << fmt::format("FAIL (seed {}): {}\n  replay the schedule: {}\n  logs: {}\n",
                           m_o.work.seed, fmt::join(violations, "; "), replay, m_logs);
  return 1;
}

}  // namespace
}  // namespace chaos

int main(int argc, char** argv) {
  const chaos::Options o = chaos::parse_options(argc, argv);
  struct sigaction act {};
  act.sa_handler = &chaos::on_interrupt;
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, nullptr);
  sigaction(SIGTERM, &act, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    chaos::Driver driver(o);
    return driver.run();
  } catch (const std::exception& e) {
    std::cerr << "txbox_chaos: FAILED (seed " << o.work.seed << "): " << e.what() << "\n";
    return 3;
  }
}
