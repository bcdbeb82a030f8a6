// at_least_once delivery: a pipeline of rounds. Claims the next round while earlier ones are
// in flight (up to one round's worth of rows, and half of relay.max_batch_bytes), settles
// each shard's rows as their delivery reports come in, and waits only when there is nothing
// to claim. Owns the streaming producer, the book of the rows in flight and the pipeline's
// timers; the pacing rules are pipeline_pacing.hpp. Internal to the relay.
#pragma once

#include <chrono>
#include <optional>

#include "delivery_mode.hpp"
#include "in_flight.hpp"
#include "streamed_rounds.hpp"

namespace txbox::relay {

class PipelinedDelivery final : public DeliveryMode {
 public:
  /// Builds the producer. Throws config_error when librdkafka refuses a property.
  explicit PipelinedDelivery(RoundContext& ctx);

  [[nodiscard]] std::string_view name() const override { return "at least once"; }
  std::set<std::string> start() override { return {}; }
  [[nodiscard]] std::set<int> busy_shards() const override { return m_flight.shards(); }
  void replace_failed_producer() override;
  [[nodiscard]] std::int64_t queue_length() const override;
  void step(const std::stop_token& stop) override;
  void finish() override;
  void flush(std::chrono::milliseconds wait) override;

 private:
  // After a fatal producer error with rows in flight: purges them once (their reports fail
  // the rows: settled as transient failures).
  void give_up_if_fatal();
  // Claims a round from the shards with nothing in flight and hands it over; true when the
  // claim took rows (held for the standbys, or streamed).
  bool claim_round(const std::stop_token& stop);
  [[nodiscard]] bool may_claim();
  // Nothing in flight: waits for work (or pauses while no round is possible).
  void wait_for_work(const std::stop_token& stop);
  void stream(std::vector<Row> rows);
  void settle_ready(std::chrono::milliseconds wait);
  std::size_t book_reports(std::chrono::milliseconds wait);
  [[nodiscard]] std::size_t round_rows() const;

  RoundContext& m_ctx;
  std::chrono::milliseconds m_stop_grace;  // of the producer's options
  StreamedRounds m_publisher;
  InFlight m_flight;                               // the rows in flight
  std::optional<clock::time_point> m_idle_since;   // the last claim was empty
  std::optional<clock::time_point> m_gave_up;      // purged after a fatal error
  clock::time_point m_last_report = clock::now();  // progress of the reports
  clock::time_point m_last_settle = clock::now();
};

}  // namespace txbox::relay
