// When an idle relay claims again: the pacing of its wake-up, as a pure state machine over
// the readings of a probe and an injected clock (unit-tested in tests/unit/relay_wake_test).
// Internal to the relay; Session runs the probe (docs/architecture.md, "Wake-up").
//
// Writers never notify (migrations/V6): a NOTIFY in a business transaction serialises every
// commit of the database. Instead the relay probes: it reads the outbox's identity sequence
// (last_value moves at every insert, before the commit) and the database's snapshot (which
// transactions are still running). A claim is due when
//   * the sequence moved (a writer inserted a row): at once, and again at the next
//     k_rechecks probes, for the commit that follows the insert;
//   * a transaction that may have been the writer has ended since, however long it ran. The
//     snapshot lists the running transactions older than the newest one completed (xip); a
//     writer newer than that is not listed, so for poll_interval after a move any advance of
//     the snapshot's xmax (a newer transaction completed: maybe the writer) is a sign too;
//   * poll_interval passed since the last claim (the safety net).
// The probe interval starts at probe_min after any sign of work and doubles while nothing
// happens, up to probe_max: a busy relay notices a commit within a millisecond or two, an idle
// one costs probe_max's rate of trivial queries.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "round.hpp"

namespace txbox::relay {

/// pg_current_snapshot(): transactions below xmin have ended; xmax is one past the newest
/// completed transaction: those from xmax on had not completed (running, or not started);
/// those in between have ended unless listed in xip.
struct DbSnapshot {
  std::uint64_t xmin = 0;
  std::uint64_t xmax = 0;
  std::vector<std::uint64_t> xip;  ///< running at the time of the snapshot

  /// Parses "xmin:xmax:xip,xip,..." (pg_snapshot's text form); throws std::invalid_argument.
  static DbSnapshot parse(std::string_view text);
  /// True when transaction `xid` had ended (committed or aborted) when this was taken.
  [[nodiscard]] bool ended(std::uint64_t xid) const;
};

/// One probe: the sequence's last_value and the snapshot read in the same statement.
struct ProbeReading {
  std::int64_t last_value = 0;
  DbSnapshot snapshot;
};

struct WakeOptions {
  std::chrono::milliseconds probe_min{1};   ///< probe interval right after a sign of work
  std::chrono::milliseconds probe_max{10};  ///< relay.probe_interval_ms; 0: no probe
  std::chrono::milliseconds poll_interval{
      500};  ///< relay.poll_interval_ms: claim at least this often
};

class WakePacer {
 public:
  /// Probes after the sequence moved that claim even without another sign (the writer's commit
  /// usually follows its insert within a few milliseconds).
  static constexpr int k_rechecks = 4;

  WakePacer(WakeOptions options, clock::time_point now);

  /// A claim ran at `now`; `found_rows`: it took rows (busy: probe fast).
  void claimed(clock::time_point now, bool found_rows);
  /// Feeds a probe taken at `now`; true when a claim is due.
  bool probed(clock::time_point now, const ProbeReading& reading);

  [[nodiscard]] bool probing() const { return m_options.probe_max.count() > 0; }
  /// When to probe next (meaningful while probing()).
  [[nodiscard]] clock::time_point next_probe() const { return m_next_probe; }
  /// True when poll_interval passed since the last claim.
  [[nodiscard]] bool poll_due(clock::time_point now) const;
  /// The earliest of next_probe (when probing) and the poll deadline.
  [[nodiscard]] clock::time_point next_event() const;
  /// Transactions watched: running when the sequence last moved, not seen ending yet.
  [[nodiscard]] std::size_t watched() const { return m_watch.size(); }

 private:
  void busy(clock::time_point now);
  bool watched_ended(const DbSnapshot& snapshot);
  void watch(clock::time_point now, const DbSnapshot& snapshot);

  WakeOptions m_options;
  std::optional<std::int64_t> m_last_value;
  std::set<std::uint64_t> m_watch;           ///< running, older than the newest completed
  std::optional<std::uint64_t> m_last_xmax;  ///< the previous probe's xmax
  clock::time_point m_horizon_until;         ///< until then, an xmax advance is a sign
  int m_rechecks = 0;
  clock::duration m_gap;
  clock::time_point m_next_probe;
  clock::time_point m_last_claim;
};

}  // namespace txbox::relay
