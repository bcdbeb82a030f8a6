// The values the relay's units pass to each other: a claimed row, its outcome (outcome.hpp),
// the lease view a round runs under and the gates of a round. Internal to the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "outcome.hpp"

namespace txbox::relay {

using clock = std::chrono::steady_clock;

/// One claimed outbox row.
struct Row {
  std::int64_t id = 0;
  std::string message_id;
  std::string topic;
  std::optional<std::string> key;
  std::string payload;
  std::string headers;  ///< JSON array of [name, value]
  double created_epoch = 0;
  int shard = 0;
  int attempts = 0;
  std::size_t bytes = 0;  ///< memory it takes in flight (payload, key, headers, row_overhead)
};

/// The ordering unit of a row: its shard and key (keyless rows of a shard: one unit). The
/// guarantee is per key; the shard is in it so that rows of two shards never share a unit.
using OrderKey = std::pair<int, std::optional<std::string>>;
[[nodiscard]] inline OrderKey order_key(const Row& row) {
  return {row.shard, row.key};
}

/// The shards this relay owns, their epochs, and until when that view may be acted on.
struct LeaseView {
  std::map<int, std::int64_t> epochs;  ///< shard -> epoch
  /// Held beyond the fair share with rows in flight: renewed but not claimed, given back
  /// once those rows have settled (a new owner would re-send them behind newer messages).
  std::set<int> draining;
  clock::time_point valid_until{};

  [[nodiscard]] bool empty() const { return epochs.empty(); }
  /// True while the leases hold for `budget` longer than `now`.
  [[nodiscard]] bool covers(clock::time_point now, clock::duration budget) const {
    return !epochs.empty() && now + budget <= valid_until;
  }
  /// The last moment the view covers `budget`: covers(now, budget) == (now <= until(budget)).
  [[nodiscard]] clock::time_point until(clock::duration budget) const {
    return epochs.empty() ? clock::time_point::min() : valid_until - budget;
  }
};

/// What a round checks on its way out, as values: a row goes out only while its topic is not
/// held and the leases cover its acknowledgement; a transaction commits only while they hold.
struct RoundGates {
  /// Topics whose rows may not go out now (strict durability) -> why.
  std::map<std::string, std::string> held{};
  clock::time_point send_until = clock::time_point::max();    ///< rows are handed over until then
  clock::time_point commit_until = clock::time_point::max();  ///< exactly_once: commit until then
};

/// What a lease tick may do (LeaseTable::tick), from the relay's view of Kafka (KafkaReach).
struct LeaseIntent {
  /// Heartbeat and take shards up to the fair share. False: no heartbeat and nothing taken;
  /// the shards held are renewed (or given back, below).
  bool publish = true;
  /// With publish false: give back the shards held but `busy`, when another relay is live.
  bool give_back = false;
  std::set<int> busy;  ///< shards with rows in flight: renewed, never given back
};

/// exactly_once: shards go to relays in lanes of this many (one transactional producer each).
inline constexpr int k_lane_shards = 8;
/// The lane of a shard (shards 0-7: lane 0, ...).
[[nodiscard]] constexpr int lane_of(int shard) noexcept {
  return shard / k_lane_shards;
}

/// The distinct topics of `rows`.
std::set<std::string> topics_of(const std::vector<Row>& rows);

/// "{1,2,3}": a PostgreSQL array literal, bound as one parameter.
std::string int_array(const std::vector<std::int64_t>& v);
/// The view's shards and epochs as two array literals (same order).
std::pair<std::string, std::string> lease_arrays(const LeaseView& view);
/// "<n> milliseconds", bound as an interval parameter.
std::string interval(std::chrono::milliseconds ms);

}  // namespace txbox::relay
