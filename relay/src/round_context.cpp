#include "round_context.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "fault_point.hpp"
#include "settle_plan.hpp"
#include "txbox/detail/backoff.hpp"

namespace txbox::relay {

using namespace std::chrono_literals;

std::chrono::milliseconds delivery_budget(const RelayConfig& c) {
  return c.lease_ttl / 3;
}

std::chrono::milliseconds admin_timeout(const RelayConfig& c) {
  return std::clamp<std::chrono::milliseconds>(c.lease_ttl / 3, 2s, 10s);
}

bool RoundContext::lease_time_for_round() const {
  return leases.view().covers(clock::now(), delivery_budget(cfg));
}

bool RoundContext::round_possible() const {
  return kafka.reachable() && lease_time_for_round();
}

bool RoundContext::round_possible_or_pause(const std::stop_token& stop) const {
  if (round_possible()) return true;
  detail::sleep_for(std::min(cfg.poll_interval, cfg.lease_ttl / 3), stop);
  return false;
}

void RoundContext::idle(const std::stop_token& stop) {
  if (const auto over = standbys.nothing_claimed()) health.on_standbys(*over, 0);
  health.db_ok();  // every statement of a pass went through
  session().wait_for_work(
      stop, std::min(cfg.poll_interval, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            leases.next_tick() - clock::now())));
}

bool RoundContext::standbys_have(std::vector<Row>& rows, const std::stop_token& stop) {
  if (!standbys.enabled()) return true;
  const auto until = std::min<clock::time_point>(leases.view().valid_until - delivery_budget(cfg),
                                                 clock::now() + 1s);
  const auto verdict = standbys.wait(db(), rows, stop, until);
  health.on_standbys(verdict, rows.size());
  if (!verdict.pass) health.db_ok();  // holding is not a database failure
  return verdict.pass;
}

void RoundContext::check_durability(const std::vector<Row>& rows) {
  gate.check_due(rows);
  health.on_weak_topics(gate.weak_topics());
}

RoundGates RoundContext::round_gates(const LeaseView& view, const std::vector<Row>& rows) const {
  RoundGates g{{}, view.until(delivery_budget(cfg)), view.until(delivery_budget(cfg) / 3)};
  for (const auto& topic : topics_of(rows)) {
    if (auto why = gate.hold_reason(topic)) g.held.emplace(topic, *why);
  }
  return g;
}

void RoundContext::on_slow(const std::set<std::string>& topics) {
  health.broker(false, fmt::format("no acknowledgement for {} ms (broker unreachable or "
                                   "slow); waiting for it",
                                   cfg.lease_ttl.count()));
  health.on_isr_shortfalls(gate.isr_shortfalls(topics));
}

void RoundContext::lease_short(std::size_t rows) {
  if (rows == 0) return;
  spdlog::warn(
      "leases: {} claimed row(s) not sent: the leases would expire before Kafka could "
      "acknowledge them (the relay stalled, or Kafka was slow to take them); they go out "
      "in a later round",
      rows);
  leases.expedite();
}

void RoundContext::settle(const std::vector<Row>& rows, const std::vector<Outcome>& outcomes,
                          const LeaseView& view, std::string_view fenced_fate) {
  const double now_epoch =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto plan = classify_round(rows, outcomes, now_epoch);
  if (!plan.delete_ids.empty()) fault_point("after_publish");
  const auto counts = store.settle(db(), view, plan, [&](int attempts) {
    return detail::backoff(attempts, cfg.retry_backoff_min, cfg.retry_backoff_max, rng);
  });
  if (counts.deleted != plan.delete_ids.size()) {
    // Another relay took over some shard: its rows stay for the new owner.
    spdlog::warn(
        "leases: a shard was taken over during a batch; {} acknowledged row(s) "
        "left for the new owner ({})",
        plan.delete_ids.size() - counts.deleted, fenced_fate);
    leases.expedite();
  }
  health.on_settle(plan, counts);
  health.db_ok();  // every statement of a round went through
}

}  // namespace txbox::relay
