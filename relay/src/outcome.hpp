// What became of one row of a round, as a value whose state answers the questions the settle
// and the pipeline ask (is it final? is it sent again?). Internal to the relay.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>
#include <utility>

#include "txbox/detail/kafka_failure.hpp"

namespace txbox::relay {

/// One row's outcome. Made by its named constructors; default: pending.
///
///   Outcome o = Outcome::failed(RD_KAFKA_RESP_ERR__TRANSPORT);
///   if (o.retryable()) ...  // settled as a retry with backoff
class Outcome {
 public:
  enum class State {
    pending,   ///< handed to librdkafka, no report yet
    acked,     ///< Kafka acknowledged it
    failed,    ///< refused (by librdkafka or the broker): err() says how
    held,      ///< not sent: its topic failed the strict durability check (error() says why)
    skipped,   ///< not sent: it waits behind its key's head, or the leases ran short
    given_up,  ///< handed over, but its report never came (stop, fatal producer): sent again
  };

  Outcome() = default;  // pending
  [[nodiscard]] static Outcome pending() { return {}; }
  [[nodiscard]] static Outcome acked() { return {State::acked, RD_KAFKA_RESP_ERR_NO_ERROR, {}}; }
  /// `error` empty: librdkafka's text for `err`.
  [[nodiscard]] static Outcome failed(rd_kafka_resp_err_t err, std::string error = {}) {
    return {State::failed, err, error.empty() ? rd_kafka_err2str(err) : std::move(error)};
  }
  [[nodiscard]] static Outcome held(std::string why) {
    return {State::held, RD_KAFKA_RESP_ERR__STATE, std::move(why)};
  }
  [[nodiscard]] static Outcome skipped(std::string why) {
    return {State::skipped, RD_KAFKA_RESP_ERR__STATE, std::move(why)};
  }
  [[nodiscard]] static Outcome given_up(std::string why = "no delivery report (given up)") {
    return {State::given_up, RD_KAFKA_RESP_ERR__TIMED_OUT, std::move(why)};
  }

  [[nodiscard]] State state() const { return m_state; }
  [[nodiscard]] rd_kafka_resp_err_t err() const { return m_err; }
  /// Why it was not acknowledged (librdkafka's text for err() when nothing more was said).
  [[nodiscard]] std::string error() const {
    return m_error.empty() ? rd_kafka_err2str(m_err) : m_error;
  }

  /// No report is awaited for it any more (anything but pending).
  [[nodiscard]] bool final() const { return m_state != State::pending; }
  /// Handed to librdkafka and still waiting for its report.
  [[nodiscard]] bool in_flight() const { return m_state == State::pending; }
  [[nodiscard]] bool is_acked() const { return m_state == State::acked; }
  /// Not sent and not settled: left in the outbox as it is (skipped).
  [[nodiscard]] bool untouched() const { return m_state == State::skipped; }
  /// Refused for good (a permanent Kafka error): moved to outbox_dead.
  [[nodiscard]] bool dead() const {
    return m_state == State::failed &&
           detail::classify_kafka(m_err) == detail::failure_kind::kafka_permanent;
  }
  /// Sent again after a backoff: a transient failure, a held row, a row given up, or one
  /// still pending when its round is settled (its report never came).
  [[nodiscard]] bool retryable() const {
    return m_state == State::held || m_state == State::given_up || m_state == State::pending ||
           (m_state == State::failed && !dead());
  }
  /// Failed because its topic does not exist (yet).
  [[nodiscard]] bool missing_topic() const {
    return m_err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           m_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  }

 private:
  Outcome(State state, rd_kafka_resp_err_t err, std::string error)
      : m_state(state), m_err(err), m_error(std::move(error)) {}

  State m_state = State::pending;
  rd_kafka_resp_err_t m_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string m_error;
};

}  // namespace txbox::relay
