// Settle classification: what to do with each row of a round, from its outcome.
// A pure function (no SQL, no Kafka): unit-tested alone. Internal to the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "round.hpp"

namespace txbox::relay {

/// What settling a round does, and what it says about the broker.
struct SettlePlan {
  struct Dead {
    std::int64_t id = 0;
    std::string error;
  };
  struct Retry {
    std::int64_t id = 0;
    std::string error;
    int attempts = 0;  ///< attempts so far (the backoff grows with it)
    /// The longest wait before the next attempt, whatever the backoff has grown to.
    std::chrono::milliseconds at_most = std::chrono::milliseconds::max();
  };
  std::vector<std::int64_t> delete_ids;  ///< acknowledged: delete (fenced)
  std::vector<Dead> dead;                ///< refused for good: move to outbox_dead (fenced)
  std::vector<Retry> retry;              ///< transient failure or held: retry with backoff
  std::map<std::string, std::uint64_t> published;  ///< acknowledged rows per topic
  std::map<std::string, std::uint64_t> held;       ///< rows held by strict durability per topic
  std::vector<double> ack_latencies;               ///< seconds from insert to ack
  std::size_t transient = 0;                       ///< transient delivery failures
  std::string first_error;                         ///< of the first transient failure
  /// Keys whose rows after a transient/held one are untouched (the other keys of the shard
  /// are settled: a held row holds its key, not its shard).
  std::set<OrderKey> stopped_keys;
};

/// A row whose topic does not exist (yet) is tried again at least this often: a topic created
/// after the relay started is used within seconds, not after a backoff that grew to
/// relay.retry_backoff_max_ms while it was missing.
inline constexpr std::chrono::milliseconds k_missing_topic_recheck{5'000};

/// Classifies `rows` (in id order per shard) by `outcomes` (same size and order): per key,
/// everything after the first transient failure or held row is left for the next round (it
/// would otherwise overtake it); skipped rows are left too. Other keys of the same shard are
/// settled (a held row of one key must not stall 1/64 of every other key). `now_epoch`: seconds
/// since the epoch, for the latencies.
SettlePlan classify_round(const std::vector<Row>& rows, const std::vector<Outcome>& outcomes,
                          double now_epoch);

}  // namespace txbox::relay
