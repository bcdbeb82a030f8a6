// The librdkafka producer keys txbox manages (see kafka_settings.hpp).
#include "kafka_settings.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "txbox/error.hpp"

namespace txbox::relay {

const std::vector<ManagedKafkaKey>& managed_kafka_keys() {
  constexpr std::string_view k_managed = "kafka.{0} is managed by txbox-relay; remove it";
  // librdkafka times messages out one by one: a key's message could fail while a later one
  // of the same key still went out (a documented gap), and its retry would land behind it.
  // Without timeouts each batch reaches Kafka gapless and in order; a stale copy (a relay
  // resumed after a stall) is an exact re-send that cannot overtake anything. The lanes keep
  // librdkafka's timeout (the transaction's): a message that times out fails its
  // transaction, which is aborted whole.
  constexpr std::string_view k_timeout =
      "kafka.{0} is managed by txbox-relay, which never gives up on a message it handed to "
      "Kafka: librdkafka times messages out one by one, so a key's message could fail while a "
      "later one of the same key went out, and the key's order would break. Remove it";
  static const std::vector<ManagedKafkaKey> keys = {
      {.key = "acks",
       .set_on = SetOn::every_producer,
       .value = "all",
       .accepted = {"all", "-1"},
       .refusal = "kafka.acks = {1} is refused: the broker would acknowledge a message before "
                  "every in-sync replica has it, so a leader failure loses messages the relay "
                  "already deleted from the outbox. Remove the setting (txbox always uses "
                  "acks=all)"},
      {.key = "enable.idempotence",
       .set_on = SetOn::every_producer,
       .value = "true",
       .accepted = {"true"},
       .refusal = "kafka.enable.idempotence = {1} is refused: without the idempotent producer "
                  "a retried send after a lost ack writes the message twice and can reorder a "
                  "key's messages. Remove the setting (txbox always enables idempotence)"},
      {.key = "transactional.id", .set_on = SetOn::transactional, .refusal = k_managed},
      {.key = "enable.gapless.guarantee", .set_on = SetOn::none, .refusal = k_managed},
      // 0: no timeout, never give up on a message once handed over.
      {.key = "message.timeout.ms",
       .set_on = SetOn::idempotent,
       .value = "0",
       .refusal = k_timeout},
      {.key = "delivery.timeout.ms", .set_on = SetOn::none, .refusal = k_timeout},
  };
  return keys;
}

void check_managed_kafka_keys(const std::map<std::string, std::string>& kafka) {
  for (const auto& m : managed_kafka_keys()) {
    const auto it = kafka.find(std::string(m.key));
    if (it == kafka.end()) continue;
    if (std::find(m.accepted.begin(), m.accepted.end(), it->second) != m.accepted.end()) {
      continue;
    }
    throw config_error(fmt::format(fmt::runtime(m.refusal), m.key, it->second));
  }
}

std::vector<std::pair<std::string, std::string>> enforced_producer_settings(
    const std::string& transactional_id) {
  const bool txn = !transactional_id.empty();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : managed_kafka_keys()) {
    const bool set = m.set_on == SetOn::every_producer ||
                     (m.set_on == SetOn::transactional && txn) ||
                     (m.set_on == SetOn::idempotent && !txn);
    if (!set) continue;
    out.emplace_back(std::string(m.key), m.value.empty() ? transactional_id : std::string(m.value));
  }
  return out;
}

}  // namespace txbox::relay
