// When an idle relay claims again: the pacing of its wake-up, as a pure state machine over
// the readings of a probe and an injected clock (unit-tested in tests/unit/relay_wake_test).
// Internal to the relay; Session runs the probe (docs/architecture.md, "Wake-up").
//
// Writers never notify (migrations/V6): a NOTIFY in a business transaction serialises every
// commit of the database. Instead the relay probes: it reads the outbox's identity sequence
// (last_value moves at every insert, before the commit) and the database's snapshot. A claim
// is due when
//   * the sequence moved (a writer inserted a row; committed or not);
//   * within the horizon (poll_interval after the last move), a transaction that may be the
//     writer completed. The writer W is running until it commits. At every probe W is either
//     listed in the snapshot's xip (running and older than the newest completed transaction:
//     it is watched, and its end is a sign), or W >= xmax (not listed: its completion makes
//     it the newest completed, so xmax advances: a sign). Either way its commit is seen at
//     the next probe, however long W ran, as long as the horizon lasts;
//   * poll_interval passed since the last claim (the safety net: a writer still running when
//     the horizon ends, a row inserted without the sequence).
// The probe interval is probe_min for k_hot after a move or a sign (the commit usually follows
// the insert within milliseconds) and doubles while nothing happens, up to probe_max: a relay
// notices a commit within a millisecond or two after activity, and an idle one costs
// probe_max's rate of trivial queries.
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
  /// How long the probe stays at probe_min after a move or a sign.
  static constexpr std::chrono::milliseconds k_hot{50};

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
  /// Transactions watched: seen running (in xip) within the horizon, not seen ending yet.
  [[nodiscard]] std::size_t watched() const { return m_watch.size(); }

 private:
  void busy(clock::time_point now);
  bool watched_ended(const DbSnapshot& snapshot);

  WakeOptions m_options;
  std::optional<std::int64_t> m_last_value;
  std::set<std::uint64_t> m_watch;           ///< running, older than the newest completed
  std::optional<std::uint64_t> m_last_xmax;  ///< the previous probe's xmax
  clock::time_point m_horizon_until;         ///< poll_interval after the last move
  clock::time_point m_hot_until;             ///< k_hot after the last move or sign
  clock::duration m_gap;
  clock::time_point m_next_probe;
  clock::time_point m_last_claim;
};

}  // namespace txbox::relay
