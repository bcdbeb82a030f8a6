#include "delivery_mode.hpp"

#include "pipelined_delivery.hpp"
#include "transactional_delivery.hpp"

namespace txbox::relay {

ProducerOptions producer_options(const RelayConfig& c) {
  ProducerOptions o;
  o.kafka = c.kafka;
  o.max_batch_bytes = c.max_batch_bytes;
  o.delivery_budget = delivery_budget(c);
  o.metadata_timeout = admin_timeout(c);
  o.transaction_timeout = 2 * c.lease_ttl;
  return o;
}

int lease_unit(const RelayConfig& c) {
  return c.delivery == txbox::Delivery::exactly_once ? k_lane_shards : 1;
}

std::unique_ptr<DeliveryMode> make_delivery_mode(RoundContext& ctx) {
  switch (ctx.cfg.delivery) {
    case txbox::Delivery::exactly_once:
      return std::make_unique<TransactionalDelivery>(ctx);
    case txbox::Delivery::at_least_once:
      break;
  }
  return std::make_unique<PipelinedDelivery>(ctx);
}

}  // namespace txbox::relay
