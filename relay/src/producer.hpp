// The relay's Kafka producer: owns the librdkafka handle with txbox's enforced settings
// (kafka_settings.hpp), hands a round of rows over in order, collects the delivery reports,
// and replaces itself after a fatal error. The layers on top keep the books: StreamedRounds
// (at_least_once), SyncRound (a lane's round) and TxnProducer (a lane's transactions). No
// SQL, no leases: a round's gates come as a value (RoundGates). Internal to the relay.
//
//   Producer p(options);
//   auto handed = p.hand_over(std::move(rows), gates);  // outcomes: pending = handed over
//   p.flush(50ms);
//   for (auto& r : p.take_reports()) ...  // {round, index, outcome}
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "round.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

struct ProducerOptions {
  std::map<std::string, std::string> kafka;  ///< the user's librdkafka properties
  std::size_t max_batch_bytes = 32u << 20;   ///< sizes librdkafka's local queue
  /// A missing topic fails its messages after this (topic.metadata.propagation.max.ms).
  std::chrono::milliseconds delivery_budget{3'333};
  std::chrono::milliseconds metadata_timeout{3'333};  ///< refresh after an unknown topic
  std::chrono::milliseconds stop_grace{5'000};        ///< unacknowledged messages at stop get this
  /// Set: a transactional producer with this transactional.id (the exactly_once lanes).
  std::string transactional_id{};
  /// transaction.timeout.ms unless the user's properties set it.
  std::chrono::milliseconds transaction_timeout{20'000};
  /// The clock the gates are read with (tests inject theirs).
  std::function<clock::time_point()> now = [] { return clock::now(); };
};

/// One delivery report: the row at `index` of round `round`.
struct Report {
  std::uint32_t round = 0;
  std::size_t index = 0;
  Outcome outcome;
};

/// What a hand-over did: the rows given back (payloads of those handed over freed), each
/// row's outcome (pending: handed to librdkafka; the others are final), and counts.
struct HandOver {
  std::uint32_t round = 0;  ///< the reports of its rows carry this
  std::vector<Row> rows;
  std::vector<Outcome> outcomes;
  std::size_t lease_short = 0;  ///< rows skipped because the leases ran short
  std::size_t handed = 0;       ///< rows handed to librdkafka
};

class Producer {
 public:
  /// Throws config_error when librdkafka refuses a property.
  explicit Producer(ProducerOptions options);
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  /// May block briefly while librdkafka's threads stop (nothing is flushed: see flush).
  ~Producer() = default;

  /// Hands `rows` (id order per shard) to librdkafka as a new round. A row of a held topic
  /// is not sent, nor are its key's later rows after it or after a local transient failure
  /// (they would overtake it; the other keys go on); once the clock passes
  /// gates.send_until, every row left is skipped. Frees what librdkafka copied.
  HandOver hand_over(std::vector<Row> rows, const RoundGates& gates);

  /// Serves delivery reports for up to `wait` with rd_kafka_flush: what is queued goes at
  /// once (librdkafka ignores linger.ms during a flush).
  void flush(std::chrono::milliseconds wait);
  /// Serves delivery reports for up to `wait` with rd_kafka_poll (linger.ms applies).
  void poll(std::chrono::milliseconds wait);
  /// The reports served since the last call (of every round; a layer keeps its own).
  std::vector<Report> take_reports();

  /// Fails every message queued or in flight (their reports follow).
  void purge();
  /// The producer hit a fatal error: it delivers nothing more (see replace_if_fatal).
  [[nodiscard]] std::optional<std::string> fatal_error() const;
  /// A producer with a fatal error can never produce again: replaces it (call between
  /// rounds; the reports of the old one are dropped). Returns the reason when it did.
  std::optional<std::string> replace_if_fatal();

  /// Messages in librdkafka's queue.
  [[nodiscard]] std::int64_t queue_length() const;
  [[nodiscard]] const ProducerOptions& options() const { return m_opt; }
  [[nodiscard]] clock::time_point now() const { return m_opt.now(); }
  /// For the transaction calls (TxnProducer); never null.
  [[nodiscard]] rd_kafka_t* handle() const { return m_handle.get(); }

 private:
  void make_handle();
  void on_report(const rd_kafka_message_t& m);
  void refresh_missing_topics(const std::vector<Row>& rows);
  // Hands one row over as index `index` of `round`: pending (handed over), failed, or
  // nullopt when the clock passed `send_until` first.
  std::optional<Outcome> produce(const Row& row, std::uint32_t round, std::size_t index,
                                 clock::time_point send_until);

  ProducerOptions m_opt;
  detail::kafka_ptr m_handle;
  std::uint32_t m_round = 0;  // the last round handed over
  std::vector<Report> m_reports;
  // Topics librdkafka said do not exist (in a report or at the hand-over): their metadata is
  // refreshed before rows go to them again, so a topic created meanwhile is used at once.
  std::set<std::string> m_missing;
};

}  // namespace txbox::relay
