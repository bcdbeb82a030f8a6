// The at_least_once pipeline's pacing rules, as pure functions: when another round may be
// claimed, when to settle, when to give up on reports, when the reports stall. The clock is
// injected: every rule takes the time points it compares. No SQL, no Kafka: unit-tested alone
// (tests/unit/relay_pacing_test.cpp). Internal to the relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>

#include "round.hpp"

namespace txbox::relay::pacing {

/// The settle waits at most this long for more acknowledgements (settle_due).
inline constexpr std::chrono::milliseconds k_settle_delay{10};
/// After a purge (give_up), rows whose report never came are abandoned after this.
inline constexpr std::chrono::seconds k_abandon_after{10};

/// The rows of a full round: `batch_size` per shard owned (at least one shard).
[[nodiscard]] std::size_t round_rows(int batch_size, std::size_t shards_owned);

/// Room for another round: at most a round's rows and half of relay.max_batch_bytes in flight
/// (so rounds stay large, and two of them overlap).
[[nodiscard]] bool room_for_round(std::size_t rows_in_flight, std::size_t bytes_in_flight,
                                  std::size_t round_rows, std::size_t max_batch_bytes);

/// While rows are in flight and the last claim found nothing (`idle_since` set): claim again
/// only when `work_due` says so (the wake-up saw signs of new rows, or poll_interval passed).
/// `work_due` is asked only then (it may block for one probe).
[[nodiscard]] bool claim_due(const std::optional<clock::time_point>& idle_since,
                             const std::function<bool()>& work_due);

/// The rows of the book to settle now: few large settles (a DELETE's commit costs the same
/// for 10 rows as for 10,000), but at most k_settle_delay late (an acknowledged row holds its
/// shard's next rows, and risks a re-send). `rows`: in the book, `pending`: without a report.
[[nodiscard]] bool settle_due(std::size_t rows, std::size_t pending, std::size_t round_rows,
                              clock::time_point now, clock::time_point last_settle);

/// A purge after a fatal producer error (`gave_up`: when) is over: the rows whose report
/// never came are abandoned (settled as transient failures) k_abandon_after later.
[[nodiscard]] bool abandon_due(const std::optional<clock::time_point>& gave_up,
                               clock::time_point now);

/// The report-stall timer's new mark: `now` when reports came or none is pending, else
/// `last_report` unchanged.
[[nodiscard]] clock::time_point report_mark(clock::time_point last_report, bool reports_came,
                                            std::size_t pending, clock::time_point now);

/// No report for longer than `lease_ttl` since `last_report`: the broker is unreachable or
/// slow (on_slow), then the timer starts again.
[[nodiscard]] bool reports_stalled(clock::time_point last_report, clock::time_point now,
                                   std::chrono::milliseconds lease_ttl);

/// At stop: the rows in flight wait for their reports while `pending` and `now` is before
/// `until` (the stop grace's end); then they are given up.
[[nodiscard]] bool stop_grace_left(std::size_t pending, clock::time_point now,
                                   clock::time_point until);

}  // namespace txbox::relay::pacing
