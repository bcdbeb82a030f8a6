// How the relay's rounds reach Kafka (relay.delivery): one strategy per mode, chosen once from
// the config (make_delivery_mode). The loop (Relay::impl) ticks the leases, keeps the gauges
// and handles failures; a mode claims, delivers and settles. Internal to the relay.
//   at_least_once: PipelinedDelivery (pipelined_delivery.hpp)
//   exactly_once:  TransactionalDelivery (transactional_delivery.hpp)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>

#include "producer.hpp"
#include "round_context.hpp"
#include "txbox/relay.hpp"

namespace txbox::relay {

class DeliveryMode {
 public:
  virtual ~DeliveryMode() = default;
  DeliveryMode() = default;
  DeliveryMode(const DeliveryMode&) = delete;
  DeliveryMode& operator=(const DeliveryMode&) = delete;

  /// For the start-up line: "at least once", "exactly once".
  [[nodiscard]] virtual std::string_view name() const = 0;
  /// At start, connected: sets the mode up; returns the topics it needs whose durability is
  /// checked at start besides the outbox's. Throws what the database and Kafka throw.
  virtual std::set<std::string> start() = 0;
  /// The shards with rows in flight (the lease tick renews them and never gives them back).
  [[nodiscard]] virtual std::set<int> busy_shards() const = 0;
  /// Between passes, before the gauges: replaces a producer that failed fatally once
  /// nothing is in flight.
  virtual void replace_failed_producer() = 0;
  /// Messages in the producers' queues (the backlog gauge).
  [[nodiscard]] virtual std::int64_t queue_length() const = 0;
  /// One pass after the lease tick: returns after a round, or after waiting for work.
  virtual void step(const std::stop_token& stop) = 0;
  /// At stop: what is in flight gets its grace and is settled (when the database is there).
  virtual void finish() = 0;
  /// Waits up to `wait` for what the producers hold.
  virtual void flush(std::chrono::milliseconds wait) = 0;
};

/// The options every producer of the relay is built with (stop_grace: 5 s).
[[nodiscard]] ProducerOptions producer_options(const RelayConfig& c);

/// Shards are taken and given back in groups of this many under `c`'s mode (LeaseTable).
[[nodiscard]] int lease_unit(const RelayConfig& c);

/// The strategy of `ctx.cfg.delivery`. Throws config_error when librdkafka refuses a property.
[[nodiscard]] std::unique_ptr<DeliveryMode> make_delivery_mode(RoundContext& ctx);

}  // namespace txbox::relay
