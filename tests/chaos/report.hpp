// The chaos driver's account of a run: what it did (the tally it keeps while running), the
// number formatting of its lines, and the result table with the verdict.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "log_audit.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "workload.hpp"

namespace chaos {

/// What the driver did and saw during a run, for the result table.
struct Tally {
  std::string assignment;                          ///< the consumers' partition.assignment.strategy
  std::string logs;                                ///< the directory of the logs
  std::array<int, k_fault_kinds> fault_counts{};   ///< faults injected, by kind
  int faults_done = 0;                             ///< faults injected
  int postponed = 0;                               ///< faults that waited for an eligible target
  std::int64_t terminated_backends = 0;            ///< by the connection resets
  std::vector<std::string> unexpected_exits;       ///< processes that exited by themselves
  std::vector<std::string> unclean_stops;          ///< processes that failed SIGTERM
  double servers_s = 0, write_s = 0, drain_s = 0;  ///< the phases' durations
  double audit_s = 0;                              ///< the log audit's duration
  std::string audit_error;                         ///< why the log audit failed, if it did

  /// When a fault began that can let a relay's leases expire under rows in flight (epoch ms):
  /// a relay SIGSTOP, PostgreSQL stopped or failed over.
  std::vector<std::int64_t> lease_risks_ms;
};

/// 12345 -> "12,345".
std::string group(std::int64_t n);

/// The current time, UTC, as "YYYY-MM-DD HH:MM:SS".
std::string utc_now();

/// Prints the result table and PASS or FAIL (with the violations, the replay command and
/// the logs); returns 0 on a pass, 1 on any violation. `log`: the log audit (nullopt when it
/// failed: Tally::audit_error); its duplicate and stale copies are violations in exactly-once
/// mode; at least once, duplicates are information, and so are the stale copies of a replay
/// that catches up, but a stale copy that leaves its key behind is a violation unless a fault
/// that can let leases expire (Tally::lease_risks_ms) began between its creation and the
/// newer message's.
/// `wall_s`: the run's duration so far.
int report(const Options& o, const Tally& t, const WriterStats& ws, const Verdict& v,
           const std::optional<LogAudit>& log, bool drain_ok, double wall_s);

}  // namespace chaos
