// The standby gate's decisions, without SQL (the StandbyGate reads the database and feeds them
// in; tests/unit/relay_standby_gate_property_test.cpp drives them against a model): which
// walsenders count as standbys, which WAL position a claimed round waits for, and whether
// enough standbys flushed it. Internal to the relay.
//
// A round's target is pg_current_wal_insert_lsn() read after the claim that first saw its rows.
// While the round is held its target stays: a later pass that claims the same rows again (they
// stay in the outbox) waits for that target, not for a fresh one, which under continuous writes
// would always be one replication lag ahead. Rows such a pass claims that the held round did
// not have wait for a round of their own (they may have committed after the target).
//
//   StandbyRounds rounds(1, {"node1"});
//   auto round = rounds.claimed(refs_of(rows), insert_lsn, server);  // round.refs: may go
//   if (rounds.check(round.target, walsenders).pass) { publish(round.refs); rounds.published(); }
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace txbox::relay {

/// A WAL position (pg_lsn).
using Lsn = std::uint64_t;

/// "16/B374D848" as a number; throws std::invalid_argument for anything else.
Lsn parse_lsn(std::string_view text);
/// The pg_lsn text of `lsn` ("16/B374D848").
std::string format_lsn(Lsn lsn);

/// One walsender as pg_stat_replication shows it.
struct Walsender {
  std::string application_name;
  std::string client;  ///< client address, "local" for a Unix socket
  std::string state;   ///< startup, catchup, streaming, backup, stopping
  std::optional<Lsn> flush_lsn;
  bool logical = false;  ///< on a logical replication slot (Debezium, subscriptions)

  /// "node1@10.0.0.7" ("walreceiver" when application_name is empty).
  [[nodiscard]] std::string name() const;
};

/// Why `w` does not count as a standby (nullopt: it counts). With `standby_names` empty every
/// physical walsender with a flush position counts except those in the backup state and those
/// whose application_name is the default of pg_receivewal or pg_basebackup (WAL archivers:
/// a promotion cannot go to them); otherwise only walsenders whose application_name is one of
/// `standby_names`.
std::optional<std::string> not_counted(const Walsender& w,
                                       const std::vector<std::string>& standby_names);

/// A claimed row as the gate tells it apart: the id and the message id (after a failover or a
/// crash the id sequence can hand out an id again, to another message).
struct RowRef {
  std::int64_t id = 0;
  std::string message_id;
  auto operator<=>(const RowRef&) const = default;
};

/// What the standbys show for a target.
struct StandbyCount {
  bool pass = false;
  std::size_t counted = 0;  ///< walsenders that count as standbys
  std::size_t flushed = 0;  ///< of them, those flushed at or past the target
};

class StandbyRounds {
 public:
  /// `required`: relay.wait_for_standbys; `standby_names`: relay.standby_names.
  StandbyRounds(int required, std::vector<std::string> standby_names);

  /// The round a pass waits for.
  struct Round {
    Lsn target = 0;
    std::vector<RowRef> refs;  ///< of the claimed rows, those that may go once `target` passes
    bool kept = false;         ///< the target of a held round (not this pass's insert position)
  };

  /// A pass claimed `refs` (not empty); `insert_lsn` is pg_current_wal_insert_lsn() read after
  /// the claim, `server` names the primary it was read on (a failover or restart drops a held
  /// round). A held round on the same server whose rows are claimed again keeps its target;
  /// otherwise the pass starts a round of all it claimed, with `insert_lsn` as its target.
  Round claimed(const std::vector<RowRef>& refs, Lsn insert_lsn, const std::string& server);

  /// Whether `required` of the walsenders that count flushed at or past `target`.
  [[nodiscard]] StandbyCount check(Lsn target, const std::vector<Walsender>& walsenders) const;

  /// The round passed (its rows went to Kafka): the next claim starts a new one.
  void published();
  /// A pass claimed nothing: a held round's rows are gone.
  void nothing_claimed();

  [[nodiscard]] bool holding() const { return m_held.has_value(); }
  [[nodiscard]] const std::vector<std::string>& standby_names() const { return m_names; }

 private:
  struct Held {
    Lsn target = 0;
    std::string server;
    std::set<RowRef> refs;
  };
  int m_required;
  std::vector<std::string> m_names;
  std::optional<Held> m_held;
};

}  // namespace txbox::relay
