// The relay benchmark's big backlog: messages written through txbox::Outbox::enqueue at a
// paced rate while no relay runs (autovacuum does), then drained by one txbox-relay, with the
// outbox's size and vacuum activity sampled along the way; and a small backlog drained by one
// relay to compare the cost per message with.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "relay_bench_txbox.hpp"

namespace bench {

inline constexpr int k_fill_writers = 4;           ///< writer connections of the paced fill
inline constexpr int k_fill_rows = 100;            ///< messages per transaction
inline constexpr long k_base_backlog = 10'000;     ///< the baseline backlog
inline constexpr int k_base_reps = 3;              ///< its drains, averaged
inline constexpr long k_await_vacuum = 1'000'000;  ///< from this size, await an autovacuum

/// The outbox table at one moment of the run.
struct TableSample {
  double t_s = 0;    // since the big run's start
  long pending = 0;  // messages written and not yet read back from Kafka
  double table_mib = 0, index_mib = 0, total_mib = 0;  // pg_relation_size, pg_indexes_size,
                                                       // pg_total_relation_size
  long dead = 0, autovacuums = 0;                      // n_dead_tup, autovacuum_count
};

/// The outbox's row in pg_stat_user_tables.
struct TableStats {
  long live = 0, dead = 0, inserted = 0, deleted = 0;
  long autovacuums = 0, vacuums = 0, autoanalyzes = 0;
  std::string last_autovacuum;  // empty: never
};

/// A backlog filled at a paced rate with no relay running, then drained by one relay, timed
/// from its start until every message is read back from Kafka and removed from the outbox.
struct PacedDrain {
  double fill_rate = 0;  // msg/s the writers achieved
  double fill_s = 0, drain_s = 0;
  DrainRun drain;  // wall and relay CPU from the first message read back to the last
};

/// The big backlog run and its baseline.
struct BigBacklog {
  long n = 0;       ///< messages (0: not run)
  double rate = 0;  ///< the fill's offered rate, msg/s
  PacedDrain big;   ///< n messages
  DrainRun base;    ///< k_base_backlog enqueued in one transaction, k_base_reps drains averaged
  std::string autovacuum;                  ///< SHOW autovacuum
  std::vector<TableSample> samples;        ///< before, every ~10 s, after the fill and the drain
  std::size_t filled = 0, drained = 0;     ///< indexes of the samples after the fill and drain
  std::size_t vacuumed = 0;                ///< of the sample after the autovacuum awaited, or 0
  TableStats before, after;                ///< around the big run, after the relay stopped
  TableStats vacuumed_stats;               ///< after the autovacuum awaited
  static constexpr double k_target = 1.2;  ///< big's wall cost <= this x base's
};

/// The baseline then the big run: `n` messages of `topic` at `rate` msg/s; progress on stderr
/// every ~10 s.
BigBacklog big_backlog(pqxx::connection& c, const std::string& topic, long n, double rate);

}  // namespace bench
