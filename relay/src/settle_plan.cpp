// Settle classification (see settle_plan.hpp).
#include "settle_plan.hpp"

#include <fmt/format.h>

#include <stdexcept>

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

SettlePlan classify_round(const std::vector<Row>& rows, const std::vector<Outcome>& outcomes,
                          double now_epoch) {
  if (rows.size() != outcomes.size()) {
    throw std::logic_error("classify_round: one outcome per row expected");
  }
  SettlePlan plan;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const Outcome& o = outcomes[i];
    if (plan.stopped_keys.contains(order_key(row)) || o.untouched()) continue;
    if (o.is_acked()) {
      plan.delete_ids.push_back(row.id);
      ++plan.published[row.topic];
      plan.ack_latencies.push_back(now_epoch - row.created_epoch);
      continue;
    }
    const std::string error = o.error();
    if (o.dead()) {
      plan.dead.push_back({row.id, error});
      continue;
    }
    // Retried with backoff (a held row too: strict durability never makes a row dead); the
    // key's later rows wait behind it.
    plan.stopped_keys.insert(order_key(row));
    plan.retry.push_back({row.id, error, row.attempts});
    if (o.state() == Outcome::State::held) {
      ++plan.held[row.topic];
      continue;
    }
    if (o.missing_topic()) plan.retry.back().at_most = k_missing_topic_recheck;
    ++plan.transient;
    if (plan.first_error.empty()) plan.first_error = error;
  }
  return plan;
}

}  // namespace txbox::relay
