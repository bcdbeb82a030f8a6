// The exactly_once progress topic: one compacted partition per lane, written only by that
// lane's transactional producer. Each transaction adds one record naming the outbox rows it
// published; since a lane's rows are deleted before its next transaction starts, the lane's
// last committed record names every row that may still be in the outbox although Kafka holds
// it. Records are keyed by the lane's transactional id (txbox-<outbox id>-lane-<n>), so
// outboxes may share a topic (relay.progress_topic): each reads back only its own, and
// compaction keeps one record per outbox and lane. Internal to the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "round.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

/// Lanes, so partitions the progress topic needs.
inline constexpr int k_lanes = 64 / k_lane_shards;

/// A row a transaction published: its outbox id and message id (ids alone could match a
/// different row after a failover or a restore re-issued them).
struct PublishedRow {
  std::int64_t id = 0;
  std::string message_id;
  bool operator==(const PublishedRow&) const = default;
};

/// The record's value: {"v":1,"lane":n,"relay":"name","rows":[[id,"message id"],...]}.
std::string encode_progress(int lane, const std::string& relay,
                            const std::vector<PublishedRow>& rows);
/// The rows of a record's value; throws std::runtime_error for a value it cannot read.
std::vector<PublishedRow> decode_progress(std::string_view value);
/// A lane's transactional id and the key of its progress records: "<id_prefix>-lane-<n>",
/// id_prefix "txbox-<outbox id>".
std::string lane_key(const std::string& id_prefix, int lane);
/// The key the relays before issue 25 gave a lane's records, whatever the outbox: "lane-<n>".
std::string legacy_progress_key(int lane);

/// Finds, in one lane's partition of the progress topic read in offset order, the rows that
/// this outbox's last committed transaction of the lane published. Records of other outboxes
/// sharing the topic are skipped. Records keyed the old way (legacy_progress_key) are this
/// outbox's in its own default topic (`legacy::own`); in a topic named in
/// relay.progress_topic they may be another outbox's (`legacy::maybe_own`): then the rows of
/// every such record after this outbox's last own record are taken too. That is safe: rows
/// are deleted by outbox id and message id, which another outbox's rows never match, and a
/// lane's older rows are gone already. Example:
///   ProgressScan scan(lane_key("txbox-" + id, 3), legacy_progress_key(3), legacy::own);
///   for (each committed record, oldest first) scan.add(key, value);
///   if (scan.found()) delete scan.rows();  // else read from further back
class ProgressScan {
 public:
  enum class legacy { own, maybe_own };
  ProgressScan(std::string key, std::string legacy_key, legacy policy);

  /// The partition's next record. Throws std::runtime_error for an unreadable value of a
  /// record that may be this outbox's (never for another outbox's).
  void add(std::string_view key, std::string_view value);
  /// True once a record known to be this outbox's was read: rows() needs nothing older.
  [[nodiscard]] bool found() const { return m_found; }
  /// The rows of the last own record and of the maybe-own records after it (no duplicates).
  [[nodiscard]] std::vector<PublishedRow> rows() const;

 private:
  std::string m_key;
  std::string m_legacy_key;
  legacy m_legacy;
  bool m_found = false;
  std::vector<PublishedRow> m_last;   // of the last own record
  std::vector<PublishedRow> m_after;  // of the maybe-own records after it
};

class ProgressLog {
 public:
  /// `kafka`: the user's librdkafka properties (bootstrap, security); `outbox_id`: the
  /// outbox identity (migration V5); `topic`: relay.progress_topic, empty for the default
  /// txbox-progress-<outbox id>. Throws config_error.
  ProgressLog(const std::map<std::string, std::string>& kafka, const std::string& outbox_id,
              std::string topic, std::chrono::milliseconds timeout);

  /// Creates the topic when missing (k_lanes partitions, compacted, RF min(3, brokers),
  /// min.insync.replicas 2 at RF 3); throws config_error when it has fewer partitions, or
  /// kafka_call_error when Kafka does not answer.
  void ensure_topic();

  /// Per lane, the rows named by this outbox's last committed record of the lane
  /// (read_committed; see ProgressScan); a lane without one is left out. Call after
  /// init_transactions of the lanes' producers: then no transaction of theirs is open.
  /// Throws kafka_call_error when Kafka does not answer, std::runtime_error for an
  /// unreadable record of this outbox.
  std::map<int, std::vector<PublishedRow>> last_committed(const std::vector<int>& lanes);

  [[nodiscard]] const std::string& topic() const { return m_topic; }
  /// The key of `lane`'s records (its transactional id).
  [[nodiscard]] std::string key(int lane) const { return lane_key(m_id_prefix, lane); }

 private:
  std::string m_id_prefix;
  std::string m_topic;
  ProgressScan::legacy m_legacy;
  std::chrono::milliseconds m_timeout;
  detail::kafka_ptr m_consumer;
};

}  // namespace txbox::relay
