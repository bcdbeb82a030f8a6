// The standby gate (relay.wait_for_standbys = N): a claimed round goes to Kafka only after N
// physical standbys have flushed the primary's WAL past the point the claim saw, so a failover
// to any of them cannot lose a row whose message is already in Kafka (a "phantom").
// Internal to the relay.
//
// The point: pg_current_wal_insert_lsn() read right after the claim's transaction. Every row
// the claim saw was committed by a commit record that ends at or before it, also under
// synchronous_commit = off, when a commit is visible before its WAL is written (which is why
// it is not pg_current_wal_lsn(), the write position). A held round keeps its point while its
// rows are claimed again (standby_round.hpp). The standbys: pg_stat_replication's walsenders
// that count (not_counted in standby_round.hpp: relay.standby_names, else every physical one
// but base backups and WAL archivers); their flush_lsn is what a promotion keeps. Reading the
// LSNs of pg_stat_replication needs pg_monitor (pg_read_all_stats).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <pqxx/connection>
#include <stop_token>
#include <string>
#include <vector>

#include "round.hpp"
#include "standby_round.hpp"

namespace txbox::relay {

/// What a round's check found.
struct StandbyVerdict {
  bool pass = true;
  std::string lsn;                    ///< the round's point (empty: the gate is off)
  std::vector<Walsender> walsenders;  ///< every walsender seen at the last look
  std::size_t flushed = 0;            ///< of the counted standbys, those flushed past `lsn`
  clock::duration waited{};
};

class StandbyGate {
 public:
  /// `required`: relay.wait_for_standbys (0: off, every round passes at once);
  /// `standby_names`: relay.standby_names (empty: every physical standby counts).
  StandbyGate(int required, std::vector<std::string> standby_names);

  [[nodiscard]] bool enabled() const { return m_required > 0; }

  /// At start: throws config_error when the role of `db` cannot read the standbys' LSNs
  /// (GRANT pg_monitor).
  void check_privilege(pqxx::connection& db) const;

  /// Takes the round's point (a held round's, when `rows` has its rows again: on a pass the
  /// rows the held round did not have are taken out of `rows`, left in the outbox for a round
  /// of their own) and polls pg_stat_replication until `required` counted standbys flushed past
  /// it, `stop` is requested or `until` comes (then pass == false: hold the round). Logs one
  /// line when holding starts, when the standbys it waits for change, and when it ends, and
  /// one when the walsenders it counts change. Throws the database's errors (the loop's
  /// failure policy handles them), and transient_error when the session is on a standby
  /// (reconnect).
  StandbyVerdict wait(pqxx::connection& db, std::vector<Row>& rows, const std::stop_token& stop,
                      clock::time_point until);

  /// A pass claimed nothing: a hold in progress is over (its rows are gone: lost with a failed
  /// primary, or their shards moved to another relay). Logs that once; nullopt when there was
  /// no hold, else the verdict to report (pass, nothing held).
  std::optional<StandbyVerdict> nothing_claimed();

 private:
  std::vector<Walsender> look(pqxx::connection& db) const;
  void report_counted(const std::vector<Walsender>& walsenders);
  void report(const StandbyVerdict& v, std::size_t rows);

  int m_required;
  StandbyRounds m_rounds;
  bool m_holding = false;
  std::string m_waiting_on;  // the standbys named in the last "holding" line
  std::string m_counted;     // the walsenders named in the last "counting" line
  clock::time_point m_hold_since{};
};

}  // namespace txbox::relay
