// The chaos driver's workload and its verdict: the test tables (chaos.sent, chaos.key_state,
// chaos.applied, chaos.apply()), the writer threads that commit messages with a sequence
// number per key through txbox::outbox, and the checks run after the pipeline drained.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace chaos {

inline constexpr const char* k_consumer = "chaos";  ///< the consumers' inbox name and group

/// What the writers commit.
struct Workload {
  std::string topic = "chaos";  ///< the topic every message goes to
  std::uint64_t seed = 0;
  int messages = 20'000;  ///< ordinary messages: keys k0000..., sequence 1, 2, ... per key
  int keys = 200;
  int writers = 4;
  int poison = 3;             ///< messages the projector always fails on: to inbox_dead
  int oversize = 2;           ///< rows over the broker's message.max.bytes: to outbox_dead
  double write_seconds = 60;  ///< the writers are paced to finish in about this time
};

/// Creates schema chaos and its tables, and one key_state row per key. Throws pqxx errors.
void create_test_schema(const std::string& pg, int keys);

/// Shared by the writer threads.
struct WriterStats {
  std::atomic<std::int64_t> committed{0};     ///< ordinary messages committed, all writers
  std::atomic<std::int64_t> transactions{0};  ///< transactions committed
  std::atomic<std::int64_t> errors{0};  ///< failures (then reconnect, read back what committed)
  std::atomic<int> done{0};             ///< writers that returned
  std::mutex mutex;
  std::string fatal;  ///< set by a writer that gave up
};

/// Writer `index` of `work.writers`: owns the keys k with k % writers == index, commits its
/// share paced by work.write_seconds, each transaction 1-8 messages plus their chaos.sent
/// rows. After any error (database killed, backend terminated, commit outcome unknown) it
/// reconnects and reads back from chaos.sent what did commit. Writer 0 also injects the
/// poison and oversize messages, spread over its share. Returns when its share is committed,
/// when `stop` is set, or after 2000 failures in a row (stats.fatal says why).
void run_writer(const Workload& work, int index, const std::string& pg, WriterStats& stats,
                std::chrono::steady_clock::time_point t0, const std::atomic<bool>& stop);

/// The outcome, read from PostgreSQL after every process stopped.
struct Verdict {
  std::int64_t committed = 0, poison = 0, oversize = 0;
  std::int64_t applied_rows = 0, applied_distinct = 0;
  std::int64_t lost = 0;               ///< committed, never applied
  std::int64_t duplicate_effects = 0;  ///< applied rows beyond one per message
  std::int64_t phantom = 0;            ///< effects of no committed message, or garbled
  std::int64_t order_violations = 0;   ///< applied rows with seq <> prev_seq + 1
  std::int64_t outbox_left = 0;
  std::int64_t inbox_dead = 0, inbox_dead_unexpected = 0, poison_missing = 0;
  std::int64_t outbox_dead = 0, outbox_dead_unexpected = 0, oversize_missing = 0;
  std::int64_t kafka_records = -1;   ///< sum of the end offsets; -1 when the broker did not say
  std::int64_t consumed = 0;         ///< sum of the inbox's stored next offsets
  std::int64_t inbox_rows = 0;       ///< distinct messages the inbox recorded
  std::vector<std::string> details;  ///< examples of each violation, for the analysis
};

/// Checks the database against what the writers committed; `end_offsets` are `topic`'s
/// (nullopt if the broker did not answer). Throws pqxx errors.
Verdict verify(const std::string& pg, const std::string& topic,
               const std::optional<std::vector<std::int64_t>>& end_offsets);

}  // namespace chaos
