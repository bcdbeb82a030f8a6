// The exactly_once progress topic: one compacted partition per lane, written only by that
// lane's transactional producer. Each transaction adds one record naming the outbox rows it
// published; since a lane's rows are deleted before its next transaction starts, the lane's
// last committed record names every row that may still be in the outbox although Kafka holds
// it. Internal to the relay.
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
/// The record's key for a lane.
std::string progress_key(int lane);

class ProgressLog {
 public:
  /// `kafka`: the user's librdkafka properties (bootstrap, security); throws config_error.
  ProgressLog(const std::map<std::string, std::string>& kafka, std::string topic,
              std::chrono::milliseconds timeout);

  /// Creates the topic when missing (k_lanes partitions, compacted, RF min(3, brokers),
  /// min.insync.replicas 2 at RF 3); throws config_error when it has fewer partitions, or
  /// kafka_call_error when Kafka does not answer.
  void ensure_topic();

  /// The rows named by the lane's last committed record (read_committed); empty when none.
  /// Call after init_transactions of the lane's producer: then no transaction of the lane is
  /// open. Throws kafka_call_error when Kafka does not answer in time.
  std::vector<PublishedRow> last_committed(int lane);

  [[nodiscard]] const std::string& topic() const { return m_topic; }

 private:
  std::string m_topic;
  std::chrono::milliseconds m_timeout;
  detail::kafka_ptr m_consumer;
};

}  // namespace txbox::relay
