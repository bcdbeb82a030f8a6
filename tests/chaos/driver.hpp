// The chaos driver: runs the pipeline on servers of its own, injects the planned faults and
// restores them, waits for the drain and has the outcome verified. Its run loop is in
// driver.cpp, its fault injection (the events and what they do) in faults.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "log_audit.hpp"
#include "monitor.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "process.hpp"
#include "report.hpp"
#include "servers.hpp"
#include "workload.hpp"

namespace chaos {

/// One run of the chaos test; run() returns the exit code (0 pass, 1 violation, 3 setup or
/// servers failed, 130 interrupted). `interrupted` is set by SIGINT/SIGTERM; the driver sets
/// it too, to stop the writers after a failure.
class Driver {
 public:
  using Clock = std::chrono::steady_clock;

  Driver(Options o, std::atomic<bool>& interrupted)
      : m_o(std::move(o)), m_interrupted(interrupted) {}

  int run();

 private:
  enum class ServerState { up, down, starting };
  /// What a scheduled event does: a fault, or the end of one.
  enum class Action {
    fault,
    restart_relay,
    cont_relay,
    restart_consumer,
    cont_consumer,
    start_broker,
    start_pg,
    start_node,   // the cluster's broker m_node, after a leader kill
    resume_node,  // SIGCONT the cluster's broker m_node
    attach_standby,
  };
  /// A scheduled event.
  struct Event {
    Clock::time_point at;
    Action action;
    std::size_t index;  // plan index for a fault; child index for the others
    bool operator>(const Event& other) const { return at > other.at; }
  };
  using Pool = std::vector<std::unique_ptr<Child>>;

  double since_start() const {
    return std::chrono::duration<double>(Clock::now() - m_t_start).count();
  }
  /// Prints a line stamped with the seconds since the start.
  void say(const std::string& line);

  // driver.cpp: the run loop.
  void setup();
  void start_children();
  void write_phase();
  bool drain_phase();
  void progress(bool force);
  void stop_pool(Pool& pool);
  void stop_children();
  std::optional<LogAudit> audit();

  // faults.cpp: the events.
  void schedule_plan();
  void handle_due(bool stop_on_infra_error);
  void inject(std::size_t plan_index);
  void handle(const Event& e);
  void reap_children();
  void poll_servers();
  /// Starts the broker (`kafka`) or PostgreSQL again in the background: servers.sh `cmd`
  /// (default start-kafka / start-pg) with `arg`.
  void server_start_async(bool kafka, const std::string& cmd = {}, const std::string& arg = {});
  /// A fault against a broker of the cluster (leader kill, pause, disk loss).
  void inject_node_fault(const PlannedFault& f, const std::string& n);
  std::string terminate_backends(std::uint64_t pick);
  // pg_failover.cpp: the pair of --pg-failover.
  void pg_pair_setup();
  void pg_pair_started();
  bool pg_fail_over(const std::string& label, double down_s);
  void pg_attach_standby();
  /// The index in `pool` of a running child chosen by `pick`; nullopt when none runs.
  static std::optional<std::size_t> pick_child(const Pool& pool, std::uint64_t pick);

  Options m_o;
  std::atomic<bool>& m_interrupted;
  Clock::time_point m_t_start = Clock::now();
  Clock::time_point m_t_writes{};
  Tally m_tally;
  std::unique_ptr<Servers> m_servers;
  std::unique_ptr<Guardian> m_guardian;
  std::map<std::string, std::string> m_env;
  std::unique_ptr<Kafka> m_kafka;
  std::unique_ptr<Monitor> m_monitor;
  Pool m_relays, m_consumers;
  std::vector<PlannedFault> m_plan;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> m_events;
  std::set<std::size_t> m_waited;  // plan indices of the faults that were postponed
  // On the cluster m_broker is up only while all three brokers are; m_node is the one faulted.
  ServerState m_broker = ServerState::up, m_pg = ServerState::up;
  int m_node = 0;
  // A broker is SIGSTOPped: requests already in its sockets are appended when it resumes, even
  // those of a relay that died meanwhile.
  bool m_broker_paused = false;
  bool m_standby = true;  // --pg-failover: the primary has its standby
  std::thread m_server_thread_kafka, m_server_thread_pg;
  std::atomic<int> m_kafka_result{-1}, m_pg_result{-1};  // -1 running, 0 ok, 1 failed
  std::string m_infra_error;
  WriterStats m_ws;
  Clock::time_point m_next_progress{};
};

}  // namespace chaos
