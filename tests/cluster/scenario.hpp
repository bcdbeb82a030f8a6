// One pipeline on the cluster for one test: a database of its own (with the txbox schema and
// the chaos driver's test tables), a topic with replication factor 3, two txbox-relay
// processes, a txbox::inbox consumer process (the chaos projector: every effect a row, so a
// duplicate or a reordering shows), writer threads committing a sequence number per key, and
// a sampler of the relays' progress (from their /metrics) that measures stalls.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "harness.hpp"
#include "workload.hpp"

namespace txbox::cluster {

struct ScenarioOptions {
  int messages = 4000;
  int keys = 40;
  double write_seconds = 20;  ///< the writers are paced to finish in about this time
  int partitions = 3;
  int relays = 2;
  std::map<std::string, std::string> topic_configs = {};
};

class Scenario {
 public:
  /// Creates the database, schemas and topic and starts the relays and the consumer.
  Scenario(const std::string& name, ScenarioOptions o);
  ~Scenario();
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  /// Starts the writers (threads) and the progress sampler.
  void start_writing();
  /// Stops the writers early: a test whose faults must fall while messages flow writes more
  /// than it needs and stops once its faults are over (the checks count what committed).
  void stop_writing() { m_stop_writers = true; }
  /// Waits for the writers to finish (fails the test after `timeout`).
  void wait_writers(std::chrono::seconds timeout);
  /// Waits until the outbox is empty and the consumer is at the topic's end; false (with
  /// `why`) after `timeout`.
  bool drain(std::chrono::seconds timeout, std::string& why);
  /// The verdict of the chaos driver's checks (lost, duplicate effects, order, ...).
  chaos::Verdict verdict();

  /// Marks the instant of a fault; stall_after(i) is measured from the i-th mark.
  void mark(const std::string& what);
  /// The longest time the relays published nothing, between the i-th mark and the next one
  /// (or now), counted from their last progress before the mark: the stall the fault caused.
  [[nodiscard]] double stall_after(std::size_t i) const;
  /// Seconds from the i-th mark until the relays next published, -1 if they have not.
  [[nodiscard]] double resumed_after(std::size_t i) const;
  /// Messages the relays acknowledged so far (sum of txbox_relay_published_total).
  [[nodiscard]] long published() const { return m_published.load(); }

  /// GET `path` on relay `i` (0-based): status code and body (status 0: no answer).
  std::pair<int, std::string> http(std::size_t i, const std::string& path) const;
  /// Relay `i`'s log so far.
  [[nodiscard]] std::string relay_log(std::size_t i) const;
  /// True while every relay and the consumer are running (none exited or was restarted).
  [[nodiscard]] bool all_running();
  /// Rows in the outbox and outbox_dead now.
  [[nodiscard]] long outbox_rows() const;
  [[nodiscard]] long outbox_dead_rows() const;

  [[nodiscard]] const std::string& topic() const { return m_o.topic; }
  [[nodiscard]] const std::string& pg() const { return m_pg; }

 private:
  struct Options : ScenarioOptions {
    std::string topic;
  };
  void sample();

  Options m_o;
  std::string m_db, m_pg, m_logs;
  std::vector<int> m_ports;
  std::vector<std::unique_ptr<test::Process>> m_relays;
  std::unique_ptr<test::Process> m_consumer;
  chaos::WriterStats m_stats;
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_stop_writers{false};
  std::vector<std::thread> m_writers;
  std::thread m_sampler;
  std::atomic<long> m_published{0};
  mutable std::mutex m_mutex;
  std::vector<std::chrono::steady_clock::time_point> m_marks;
  std::vector<std::chrono::steady_clock::time_point> m_progress;  // when published() grew
};

}  // namespace txbox::cluster
