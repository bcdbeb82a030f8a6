// The chaos driver's servers: PostgreSQL and Kafka through scripts/servers.sh, in a directory
// of the driver's own, a guardian that stops them if the driver dies, and the Kafka queries
// the driver makes (topic creation, end offsets).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "txbox/detail/rdkafka.hpp"

namespace chaos {

/// scripts/servers.sh on one directory: start/stop everything, and the fault-injection
/// subcommands (stop-kafka, start-kafka, stop-pg, start-pg).
class Servers {
 public:
  /// `brokers`: 1 (a single broker) or 3 (a cluster, TXBOX_TEST_KAFKA_BROKERS=3).
  Servers(std::string dir, std::string log, int brokers = 1)
      : m_dir(std::move(dir)), m_log(std::move(log)), m_brokers(brokers) {}

  /// Runs `servers.sh CMD DIR [ARG]` with its output appended to log(); true on exit 0.
  /// Throws std::runtime_error when bash cannot be started.
  bool run(const std::string& cmd, const std::string& arg = {}) const;
  /// DIR/endpoints.env as a map (TXBOX_TEST_PG, TXBOX_TEST_KAFKA, ...).
  [[nodiscard]] std::map<std::string, std::string> endpoints() const;

  /// "NAME=VALUE" settings every later run() gets (e.g. TXBOX_TEST_PG_STANDBY=1).
  void add_env(std::vector<std::string> extra) { m_extra = std::move(extra); }

  static std::string script();
  [[nodiscard]] const std::string& dir() const { return m_dir; }
  [[nodiscard]] const std::string& log() const { return m_log; }

 private:
  std::string m_dir, m_log;
  int m_brokers;
  std::vector<std::string> m_extra;
};

/// A process in its own session that runs `servers.sh stop DIR` when the driver dies without
/// dismissing it (killed by a CTest timeout, say): the broker and PostgreSQL are daemons that
/// the death signal of the driver's other children does not reach. Create it before any
/// thread. Throws std::runtime_error when it cannot fork.
class Guardian {
 public:
  explicit Guardian(const Servers& servers);
  ~Guardian() { dismiss(); }
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  /// The driver stopped the servers itself: the guardian exits. Blocks until it has.
  void dismiss();

 private:
  pid_t m_pid = -1;
  int m_fd = -1;
};

/// A Kafka client for the driver: never joins a group, keeps quiet while the broker is down.
class Kafka {
 public:
  /// Throws std::runtime_error when librdkafka refuses the configuration.
  explicit Kafka(const std::string& bootstrap);

  /// Creates the topic with `replication_factor` and `configs` (topic settings), and waits
  /// until every partition has a leader. Throws std::runtime_error on failure or after 30 s.
  void create_topic(const std::string& topic, int partitions, int replication_factor = 1,
                    const std::map<std::string, std::string>& configs = {});
  /// True when every partition of `topic` has a leader and all its replicas in sync.
  bool fully_replicated(const std::string& topic, int timeout_ms);
  /// The broker leading `topic`'s `partition`, -1 when none or no answer.
  int leader(const std::string& topic, int partition, int timeout_ms);
  /// The end offset of every partition, or nullopt when the broker does not answer.
  std::optional<std::vector<std::int64_t>> high_watermarks(const std::string& topic, int partitions,
                                                           int timeout_ms);

 private:
  txbox::detail::kafka_ptr m_rk;
};

}  // namespace chaos
