// Record decoding: a Kafka record as the handler sees it, and the texts PostgreSQL can store.
// Internal to txbox::inbox; no state, testable alone.
#pragma once

#include <librdkafka/rdkafka.h>

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "txbox/inbox.hpp"

namespace txbox::inbox {

/// One partition of one topic.
struct TopicPartition {
  std::string topic;
  std::int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

/// "topic/partition" for log lines and metric keys.
std::string tp_text(const TopicPartition& tp);

/// Longest id stored as the inbox key (a btree entry must stay well under PostgreSQL's ~2.7 kB).
inline constexpr std::size_t max_id_bytes = 512;

/// The inbox key of a record: its ce_id as is when it is text PostgreSQL can store (UTF-8, no
/// NUL); other bytes hex-encoded ("ce_id-hex:..."), so the same bytes always give the same key;
/// a missing or empty ce_id, or one longer than max_id_bytes, gives the record's position
/// ("kafka:<topic>/<partition>/<offset>"), which still dedupes redeliveries of that record.
std::string dedupe_id(const ReceivedMessage& r);

/// Text as PostgreSQL text can hold it: bytes that are not UTF-8 (and NUL) become \xNN.
std::string storable_text(std::string_view text);

/// The message of a consumed record (not an error event): topic, partition, offset, key,
/// payload, headers, timestamp, and its dedupe id; attempt 1.
ReceivedMessage decode_record(const rd_kafka_message_t& m);

}  // namespace txbox::inbox
