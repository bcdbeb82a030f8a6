// The relay's database session: the connection (its idle-in-transaction timeout, the schema
// check) and the LISTEN for the writers' NOTIFY. Internal to the relay.
#pragma once

#include <chrono>
#include <memory>
#include <pqxx/connection>
#include <stop_token>

#include "txbox/relay.hpp"

namespace txbox::relay {

class Session {
 public:
  /// Connects, bounds idle transactions by the lease ttl, checks the schema version, LISTENs
  /// (when config.listen_notify). Throws what libpqxx throws, or schema_error.
  explicit Session(const RelayConfig& config);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  pqxx::connection& db() { return *m_db; }
  [[nodiscard]] bool is_open() const { return m_db && m_db->is_open(); }

  /// True when a NOTIFY came since the last wait or check (does not block).
  bool notified();
  /// Sleeps until a NOTIFY arrives, `max` passes, or stop is requested.
  void wait_for_work(const std::stop_token& stop, std::chrono::milliseconds max);

 private:
  class notify_flag;
  std::unique_ptr<pqxx::connection> m_db;
  std::unique_ptr<notify_flag> m_listener;
};

}  // namespace txbox::relay
