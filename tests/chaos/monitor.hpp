// The chaos driver's view of the pipeline while it runs: the progress figures read from
// PostgreSQL, and whether the pipeline drained, on a connection of its own.
#pragma once

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "servers.hpp"

namespace chaos {

/// Reads the pipeline's state; connects on first use and again after any failure.
class Monitor {
 public:
  /// `pg`: the database; `topic` and its `partitions`, whose end offsets the consumers must
  /// reach. `eos_bootstrap`: the broker, in exactly-once mode (empty otherwise), where
  /// transaction markers take the last offsets: the consumers are at the end when no record
  /// is left after their stored offsets.
  Monitor(std::string pg, std::string topic, int partitions, std::string eos_bootstrap = {})
      : m_pg(std::move(pg)),
        m_topic(std::move(topic)),
        m_partitions(partitions),
        m_eos_bootstrap(std::move(eos_bootstrap)) {}

  /// "outbox N  applied N" for the progress line, or "database unreachable".
  std::string status();
  /// True when the outbox is empty and every partition's stored next offset is its end
  /// offset (asked of `kafka`); else false with `why` saying what is left.
  bool drained(Kafka& kafka, std::string& why);
  /// Drops the connection (PostgreSQL is being stopped).
  void disconnect() { m_conn.reset(); }

 private:
  pqxx::connection& conn();

  std::string m_pg;
  std::string m_topic;
  int m_partitions;
  std::string m_eos_bootstrap;
  std::unique_ptr<pqxx::connection> m_conn;
};

}  // namespace chaos
