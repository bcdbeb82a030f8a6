// The librdkafka producer keys txbox manages, named once: what the relay's producers set after
// the user's properties, and what the relay config refuses from the user. Internal to the relay.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace txbox::relay {

/// Which producers txbox sets a managed key on.
enum class SetOn {
  every_producer,  ///< at_least_once and the exactly_once lanes
  transactional,   ///< the exactly_once lanes only
  idempotent,      ///< the at_least_once producer only (not transactional)
  none,            ///< left at librdkafka's default, but the user may not set it
};

/// One producer key txbox manages.
struct ManagedKafkaKey {
  std::string_view key;
  SetOn set_on = SetOn::none;
  /// What txbox sets (empty for transactional.id: the lane's id).
  std::string_view value{};
  /// Values the user may write too (they mean what txbox sets); none: the key is refused.
  std::vector<std::string_view> accepted{};
  /// The config_error's text; {0}: the key, {1}: the value the user wrote.
  std::string_view refusal{};
};

/// Every key txbox manages, in the order the config checks them.
const std::vector<ManagedKafkaKey>& managed_kafka_keys();

/// Throws config_error naming the first managed key `kafka` (the user's properties) sets to a
/// value txbox does not accept.
void check_managed_kafka_keys(const std::map<std::string, std::string>& kafka);

/// What txbox sets on a producer after the user's properties: `transactional_id` empty, the
/// at_least_once producer; set, a lane's transactional producer.
std::vector<std::pair<std::string, std::string>> enforced_producer_settings(
    const std::string& transactional_id);

}  // namespace txbox::relay
