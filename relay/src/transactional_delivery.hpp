// exactly_once delivery: one round at a time, one Kafka transaction per lane of shards, each
// with the lane's progress record inside it, settled before the next claim (a lane's next
// transaction must not start before its last one's DELETE). Owns the progress log and the
// lanes' transactional producers. Internal to the relay.
#pragma once

#include <chrono>
#include <memory>

#include "delivery_mode.hpp"
#include "progress_log.hpp"
#include "txn_lanes.hpp"

namespace txbox::relay {

class TransactionalDelivery final : public DeliveryMode {
 public:
  /// Sets nothing up yet: start() names the lanes' ids and the progress topic.
  explicit TransactionalDelivery(RoundContext& ctx) : m_ctx(ctx) {}

  [[nodiscard]] std::string_view name() const override { return "exactly once"; }
  /// Names the lanes' transactional ids and the progress topic (created when missing, else
  /// before the first round); returns it and Kafka's transaction state topic.
  std::set<std::string> start() override;
  [[nodiscard]] std::set<int> busy_shards() const override { return {}; }
  void replace_failed_producer() override {}  // the lanes replace theirs (adopt)
  [[nodiscard]] std::int64_t queue_length() const override;
  void step(const std::stop_token& stop) override;
  void finish() override {}  // each round is settled before the next claim
  void flush(std::chrono::milliseconds wait) override;

 private:
  void adopt_lanes();
  void publish(std::vector<Row> rows, const std::stop_token& stop);

  RoundContext& m_ctx;
  std::unique_ptr<ProgressLog> m_progress;
  std::unique_ptr<TxnLanes> m_lanes;
  bool m_progress_topic_ready = false;
};

}  // namespace txbox::relay
