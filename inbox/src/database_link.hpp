// The consumer's database connection and its failure state: when statements may run, when to
// reconnect, how long to back off, what /readyz says; one log line per state change.
#pragma once

#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>

#include "partition_tracker.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox::inbox {

class database_link {
 public:
  struct settings {
    std::string name;  ///< the inbox, for log lines
    std::string url;
    std::string schema;
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{30'000};
  };
  explicit database_link(settings s);

  /// First connection (Consumer's constructor): throws config_error (refused for a reason an
  /// operator must fix: a database that does not exist, failed authentication, an option
  /// value libpq refuses), transient_error (unreachable), both with the conninfo redacted, or
  /// schema_error.
  void connect_now();
  /// Reconnects when the connection was dropped and the backoff passed. Never throws.
  void maintain(steady::time_point now);
  /// Connected and not backing off: statements may run.
  [[nodiscard]] bool usable(steady::time_point now) const;
  /// Connected (maybe backing off).
  [[nodiscard]] bool connected() const { return m_db != nullptr; }
  [[nodiscard]] pqxx::connection& conn() { return *m_db; }
  /// A statement or batch failed with `f` during `what`: drop the connection if f.reconnect,
  /// back off (long for permanent kinds), log if the state changed.
  void failed(const detail::failure& f, const char* what);
  /// A batch committed: the failure streak is over.
  void succeeded();
  /// A round without failure: the streak is over once `quiet` passed since the backoff after
  /// the last failure ended (an idle consumer becomes ready again without flapping between
  /// the states; a batch held on a permanent error fails again before that).
  void quiet_round(steady::time_point now,
                   std::chrono::milliseconds quiet = std::chrono::seconds(5));
  /// Database part of readiness: connected, and the last failure was not permanent.
  [[nodiscard]] bool ready() const;

 private:
  enum class health { up, retrying, down, broken };
  void connect();
  void enter(health h, const std::string& line);
  settings m_s;
  std::unique_ptr<pqxx::connection> m_db;
  health m_health = health::down;
  int m_streak = 0;              // consecutive failures
  steady::time_point m_until{};  // end of the backoff after the last failure
  std::mt19937_64 m_rng{std::random_device{}()};
};

}  // namespace txbox::inbox
