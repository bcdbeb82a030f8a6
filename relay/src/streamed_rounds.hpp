// The streamed rounds of at_least_once: rounds handed over one after another while the
// earlier ones are still outstanding, and the book of their delivery reports (which rounds
// still wait for how many, and which reports came too late to belong to any). On top of one
// Producer. Internal to the relay.
//
//   StreamedRounds s(options);
//   auto handed = s.stream(std::move(rows), gates);  // book handed.rows in flight
//   for (auto& r : s.reports(5ms)) flight.report(r.round, r.index, std::move(r.outcome));
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "producer.hpp"

namespace txbox::relay {

class StreamedRounds {
 public:
  /// Throws config_error when librdkafka refuses a property.
  explicit StreamedRounds(ProducerOptions options) : m_producer(std::move(options)) {}

  /// Hands `rows` over as a new round (see Producer::hand_over) while the rounds streamed
  /// before stay outstanding; its reports come from reports().
  HandOver stream(std::vector<Row> rows, const RoundGates& gates);
  /// Serves reports for up to `wait` (sending what is queued at once, linger.ms aside) and
  /// returns those of streamed rounds that came since the last call.
  std::vector<Report> reports(std::chrono::milliseconds wait);
  /// Streamed messages whose report has not come yet.
  [[nodiscard]] std::size_t streaming() const { return m_streaming; }
  /// Reports that belonged to no outstanding round (after a replacement), ignored.
  [[nodiscard]] std::uint64_t late_reports() const { return m_late; }

  /// Fails every message queued or in flight (their reports follow): at stop after the
  /// grace, or after a fatal error.
  void give_up() { m_producer.purge(); }
  /// The producer hit a fatal error: it delivers nothing more (see replace_if_fatal).
  [[nodiscard]] bool fatal() const { return m_producer.fatal_error().has_value(); }
  /// Replaces a producer with a fatal error (call with nothing in flight: the rounds
  /// outstanding are forgotten, their rows given up by the caller). The reason when it did.
  std::optional<std::string> replace_if_fatal();

  [[nodiscard]] std::int64_t queue_length() const { return m_producer.queue_length(); }
  /// rd_kafka_flush: waits up to `wait` for everything queued.
  void flush(std::chrono::milliseconds wait) { m_producer.flush(wait); }

 private:
  Producer m_producer;
  std::map<std::uint32_t, std::size_t> m_waiting;  // streamed round -> reports to come
  std::size_t m_streaming = 0;
  std::uint64_t m_late = 0;
};

}  // namespace txbox::relay
