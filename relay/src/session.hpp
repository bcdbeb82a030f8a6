// The relay's database session: the connection (its idle-in-transaction timeout, the schema
// check) and the wake-up: the probe of the outbox's id sequence paced by WakePacer, and the
// LISTEN for a NOTIFY when relay.listen_notify is set. Internal to the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <pqxx/connection>
#include <stop_token>

#include "txbox/detail/pq.hpp"
#include "txbox/relay.hpp"
#include "wake_pacer.hpp"

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

  /// The loop claimed; `found_rows`: the claim took rows.
  void claimed(bool found_rows);
  /// True when a claim is due now: a NOTIFY came, the probe (run when due) saw signs of new
  /// rows, or relay.poll_interval passed since the last claim. Blocks for one probe at most.
  bool work_due();
  /// Returns when work_due(), after `max`, or when stop is requested.
  void wait_for_work(const std::stop_token& stop, std::chrono::milliseconds max);

 private:
  bool notified();
  ProbeReading probe();
  bool sleep_until(clock::time_point until);  // true: a notification arrived

  std::unique_ptr<pqxx::connection> m_db;
  std::unique_ptr<pq::listener> m_listener;  // relay.listen_notify only
  std::string m_probe_sql;
  WakePacer m_pacer;
};

}  // namespace txbox::relay
