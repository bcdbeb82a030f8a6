#include "transactional_delivery.hpp"

#include <spdlog/spdlog.h>

#include "durability.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox::relay {

namespace {
// What becomes of acknowledged rows a shard's new owner took over.
constexpr std::string_view k_fenced_fate =
    "it deletes them when it takes the lane, without sending them again";
}  // namespace

std::set<std::string> TransactionalDelivery::start() {
  const RelayConfig& cfg = m_ctx.cfg;
  const std::string id = m_ctx.store.identity(m_ctx.db());
  m_progress = std::make_unique<ProgressLog>(cfg.kafka, id, cfg.progress_topic,
                                             admin_timeout(cfg));  // keyed by id
  const std::string topic = m_progress->topic();
  try {
    m_progress->ensure_topic();  // before the durability check, which then sees it
    m_progress_topic_ready = true;
  } catch (const detail::kafka_call_error& e) {
    spdlog::warn("{}; created before the first round", e.what());
  }
  m_lanes = std::make_unique<TxnLanes>(LanesOptions{.producer = producer_options(cfg),
                                                    .id_prefix = "txbox-" + id,
                                                    .relay_name = cfg.name,
                                                    .init_timeout = admin_timeout(cfg),
                                                    .commit_timeout = cfg.lease_ttl},
                                       *m_progress);
  spdlog::info(
      "relay {}: exactly-once delivery: transactional ids txbox-{}-lane-0..{}, "
      "progress topic '{}'",
      cfg.name, id, k_lanes - 1, topic);
  return {topic, detail::transaction_state_topic};
}

std::int64_t TransactionalDelivery::queue_length() const {
  return m_lanes->queue_length();
}

// Claim, deliver in transactions, settle; then the next round.
void TransactionalDelivery::step(const std::stop_token& stop) {
  if (!m_ctx.round_possible_or_pause(stop)) return;
  adopt_lanes();
  auto rows = m_ctx.store.claim(m_ctx.db(), m_ctx.leases.view());
  m_ctx.session().claimed(!rows.empty());
  if (rows.empty()) {
    m_ctx.idle(stop);
    return;
  }
  if (!m_ctx.standbys_have(rows, stop)) return;
  publish(std::move(rows), stop);
}

// Before a claim: the lanes follow the leases; what a lane's last committed transaction
// published (by its previous owner, or by this relay before a failed DELETE) is deleted,
// never sent again.
void TransactionalDelivery::adopt_lanes() {
  if (!m_progress_topic_ready) {
    m_progress->ensure_topic();
    m_progress_topic_ready = true;
  }
  const auto published = m_lanes->adopt(m_ctx.leases.view());
  std::size_t deleted = 0;
  if (!published.empty()) {
    std::vector<std::int64_t> ids;
    std::vector<std::string> message_ids;
    for (const auto& r : published) {
      ids.push_back(r.id);
      message_ids.push_back(r.message_id);
    }
    deleted = m_ctx.store.delete_published(m_ctx.db(), m_ctx.leases.view(), ids, message_ids);
  }
  m_lanes->settled();
  m_ctx.health.on_lanes(m_lanes->lanes(), deleted);
}

// One round at a time, one transaction per lane, settled before the next claim.
void TransactionalDelivery::publish(std::vector<Row> rows, const std::stop_token& stop) {
  const LeaseView view = m_ctx.leases.view();  // the round's claim and settle run under it
  m_ctx.check_durability(rows);
  const RoundGates gates = m_ctx.round_gates(view, rows);
  auto slow = [this, topics = topics_of(rows)] { m_ctx.on_slow(topics); };
  auto round = m_lanes->deliver(std::move(rows), gates, Waiting{stop, m_ctx.cfg.lease_ttl, slow});
  m_ctx.health.on_transactions(round.committed, round.aborted, round.commit_seconds,
                               round.first_abort);
  m_ctx.lease_short(round.lease_short);
  m_ctx.health.on_late_reports(m_lanes->late_reports());
  m_ctx.settle(round.rows, round.outcomes, view, k_fenced_fate);
  m_lanes->settled();
}

void TransactionalDelivery::flush(std::chrono::milliseconds wait) {
  if (m_lanes) m_lanes->flush(wait);
}

}  // namespace txbox::relay
