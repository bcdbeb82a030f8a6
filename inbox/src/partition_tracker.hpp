// The partition tracker: what the consumer knows about each assigned partition, as a state
// machine whose transitions return the Kafka actions to take (pause, resume, seek). The pure
// part (partition_table) makes every decision and calls nothing; partition_driver applies the
// actions to librdkafka and is the only caller of assign, pause, resume and seek.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "record.hpp"

namespace txbox::inbox {

using steady = std::chrono::steady_clock;

/// librdkafka's logical offsets, as values (the pure part needs no Kafka handle).
inline constexpr std::int64_t offset_beginning = RD_KAFKA_OFFSET_BEGINNING;
inline constexpr std::int64_t offset_end = RD_KAFKA_OFFSET_END;
inline constexpr std::int64_t offset_invalid = RD_KAFKA_OFFSET_INVALID;

/// Where one assigned partition is.
enum class phase {
  offset_unknown,  ///< paused until its offset is read from PostgreSQL and sought to
  ready,           ///< fetching; records at or after next_offset are taken
  waiting,         ///< paused after a handler failure until resume_at (sought back to it)
};

/// One partition's state.
struct partition_state {
  txbox::inbox::phase phase = txbox::inbox::phase::offset_unknown;
  std::int64_t next_offset = -1;     ///< next offset to process (-1: not known yet)
  steady::time_point resume_at{};    ///< waiting: when to fetch again
  std::int64_t failing_offset = -1;  ///< offset of the message whose handler failed
  int attempts = 0;                  ///< failed handler runs of that message
  bool blocked = false;              ///< past max_attempts under policy block (logged once)
};

/// What to do to librdkafka after a transition, plus state changes worth one log line.
struct tracker_actions {
  std::vector<TopicPartition> pause;
  std::vector<TopicPartition> resume;
  std::vector<std::pair<TopicPartition, std::int64_t>> seek;
  std::vector<std::string> notes;     ///< state changes logged at info
  std::vector<std::string> warnings;  ///< state changes logged at warn
  /// The start offset of each newly assigned partition (offset_invalid: not known yet).
  std::map<TopicPartition, std::int64_t> assign_at;
  /// Start positions to store in PostgreSQL now (upsert_offsets): a partition that started
  /// at the end (start_from latest) with no stored offset is pinned there, so its position
  /// survives a rolled-back batch, a rebalance and a restart.
  std::map<TopicPartition, std::int64_t> store;
};

/// A handler failure the table has seen: the message's offset and its failed runs.
struct prior_failure {
  std::int64_t offset = -1;
  int attempts = 0;
};

/// The state machine. Offsets stored in PostgreSQL come in as values (`stored`); a partition
/// with no stored offset starts at offset_beginning or offset_end by `from_earliest`.
class partition_table {
 public:
  explicit partition_table(bool from_earliest) : m_from_earliest(from_earliest) {}

  /// Newly assigned partitions; `stored`: their offsets, nullopt when they could not be read
  /// (the partitions then wait paused in offset_unknown). librdkafka keeps a pause flag across
  /// unassign/assign, so a partition is always either resumed or paused here. `ends`: under
  /// start_from latest, the end offsets read from Kafka at assignment; a partition with no
  /// stored offset starts at its end (offset_end when not read).
  tracker_actions assigned(const std::vector<TopicPartition>& tps,
                           const std::optional<std::map<TopicPartition, std::int64_t>>& stored,
                           const std::map<TopicPartition, std::int64_t>& ends = {});
  /// Revoked partitions: forgotten, and resumed so no pause flag outlives them.
  tracker_actions revoked(const std::vector<TopicPartition>& tps);
  /// The fetch positions of `tps` (every partition when empty) no longer match PostgreSQL
  /// (a batch rolled back, the connection lost): pause them until offsets_loaded.
  tracker_actions offsets_lost(const std::vector<TopicPartition>& tps = {});
  /// The partitions waiting for their offset.
  [[nodiscard]] std::vector<TopicPartition> unknown() const;
  /// Offsets read for the partitions in offset_unknown: seek there (to the position known in
  /// memory when nothing is stored yet, and store it); resume unless a retry backoff is still
  /// running.
  tracker_actions offsets_loaded(const std::map<TopicPartition, std::int64_t>& stored,
                                 steady::time_point now);
  /// A batch committed: partitions advance to `next`; a failure before it is over.
  tracker_actions committed(const std::map<TopicPartition, std::int64_t>& next);
  /// A handler failed `attempts` times in all at `offset` (kept also if the batch rolls back);
  /// `resume_at`: the end of its retry backoff, kept too, so a batch rolled back by a database
  /// failure after the handler's does not run the message again before then.
  void failed(const TopicPartition& tp, std::int64_t offset, int attempts,
              steady::time_point resume_at = {});
  /// After the commit: fetch `tp` again from `offset` at `resume_at`; `blocked` when policy
  /// block holds the partition past max_attempts (logged once).
  tracker_actions retry_later(const TopicPartition& tp, std::int64_t offset,
                              steady::time_point resume_at, bool blocked, const std::string& why);
  /// Waiting partitions whose backoff passed: resume.
  tracker_actions due(steady::time_point now);

  /// Whether a fetched record of `tp` at `offset` goes into the batch (assigned, ready, not
  /// before next_offset).
  [[nodiscard]] bool accepts(const TopicPartition& tp, std::int64_t offset) const;
  /// The failure recorded for `tp`, if any.
  [[nodiscard]] std::optional<prior_failure> prior(const TopicPartition& tp) const;
  [[nodiscard]] const std::map<TopicPartition, partition_state>& partitions() const {
    return m_parts;
  }

 private:
  /// Where `s` starts: its known next offset, else offset_beginning or offset_end.
  [[nodiscard]] std::int64_t start_of(const partition_state& s) const;
  bool m_from_earliest;
  std::map<TopicPartition, partition_state> m_parts;
};

/// Applies tracker_actions to a librdkafka consumer; the only caller of assign, unassign,
/// pause, resume and seek. Never throws (librdkafka errors are logged).
class partition_driver {
 public:
  partition_driver(rd_kafka_t* rk, std::string name) : m_rk(rk), m_name(std::move(name)) {}
  /// Assigns (`add`) or unassigns the rebalance `list`, cooperative or eager; on assign the
  /// list's offsets are set from actions.assign_at first.
  void rebalance(rd_kafka_topic_partition_list_t* list, bool add, const tracker_actions& a);
  /// Pause, resume, seek and the log lines of `a`.
  void apply(const tracker_actions& a);

 private:
  /// The group's rebalance protocol is COOPERATIVE (the last known answer when librdkafka
  /// gives none, as while the consumer closes).
  bool cooperative();
  rd_kafka_t* m_rk;
  std::string m_name;
  bool m_cooperative = false;
};

}  // namespace txbox::inbox

namespace txbox::inbox {

/// The wait before fetching a failed message again after its `attempts`-th failure:
/// min · 2^(attempts-1), capped at max, with jitter (detail::backoff).
std::chrono::milliseconds retry_delay(int attempts, std::chrono::milliseconds min,
                                      std::chrono::milliseconds max, std::mt19937_64& rng);

}  // namespace txbox::inbox
