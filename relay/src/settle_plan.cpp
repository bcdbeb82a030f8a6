// Settle classification (see settle_plan.hpp).
#include "settle_plan.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "txbox/detail/kafka_failure.hpp"

namespace txbox::relay {

std::set<std::string> topics_of(const std::vector<Row>& rows) {
  std::set<std::string> out;
  for (const auto& r : rows) out.insert(r.topic);
  return out;
}

std::string int_array(const std::vector<std::int64_t>& v) {
  return fmt::format("{{{}}}", fmt::join(v, ","));
}

std::pair<std::string, std::string> lease_arrays(const LeaseView& view) {
  std::vector<std::int64_t> shards, epochs;
  for (const auto& [sh, ep] : view.epochs) {
    shards.push_back(sh);
    epochs.push_back(ep);
  }
  return {int_array(shards), int_array(epochs)};
}

std::string interval(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " milliseconds";
}

SettlePlan classify_round(const std::vector<Row>& rows, const std::vector<Delivery>& deliveries,
                          double now_epoch) {
  if (rows.size() != deliveries.size()) {
    throw std::logic_error("classify_round: one delivery per row expected");
  }
  SettlePlan plan;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const Delivery& d = deliveries[i];
    if (plan.stopped_keys.contains(order_key(row))) continue;
    switch (d.st) {
      case Delivery::state::skipped:
        continue;
      case Delivery::state::acked:
        plan.delete_ids.push_back(row.id);
        ++plan.published[row.topic];
        plan.ack_latencies.push_back(now_epoch - row.created_epoch);
        continue;
      case Delivery::state::held:
        // Strict durability: like a transient failure (retry with backoff), never dead.
        plan.stopped_keys.insert(order_key(row));
        plan.retry.push_back({row.id, d.error, row.attempts});
        ++plan.held[row.topic];
        continue;
      case Delivery::state::pending:  // no report (given up at stop): as a transient failure
      case Delivery::state::failed:
        break;
    }
    const std::string error = d.error.empty() ? rd_kafka_err2str(d.err) : d.error;
    if (d.st == Delivery::state::failed &&
        detail::classify_kafka(d.err) == detail::failure_kind::kafka_permanent) {
      plan.dead.push_back({row.id, error});
      continue;
    }
    plan.stopped_keys.insert(order_key(row));
    plan.retry.push_back({row.id, error, row.attempts});
    if (d.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
        d.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      plan.retry.back().at_most = k_missing_topic_recheck;
    }
    ++plan.transient;
    if (plan.first_error.empty()) plan.first_error = error;
  }
  return plan;
}

}  // namespace txbox::relay
