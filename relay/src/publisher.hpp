// The publisher: owns the Kafka producer (and its replacement after a fatal error), hands a
// round of rows over in order and collects their delivery reports. No SQL, no leases: the
// caller passes what may be sent as functions. Each message's opaque is the round's
// generation and the row's index, so a report from an earlier round (late, or purged) is
// never booked against a row of the current one. Internal to the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "round.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

struct PublisherOptions {
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
};

/// How a transaction ended.
struct TxnEnd {
  bool committed = false;
  /// The producer can go on no more (fenced by a newer producer of its id, or the outcome of
  /// the commit is in doubt): replace it and learn from Kafka what was committed.
  bool fatal = false;
  std::string error{};  ///< why it did not commit
};

class Publisher {
 public:
  /// Throws config_error when librdkafka refuses a property.
  explicit Publisher(PublisherOptions options);
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  /// Why a row may not go out now (strict durability), nullopt: it may.
  using HoldFn = std::function<std::optional<std::string>(const std::string& topic)>;
  /// Checked right before every hand-over: false when the leases would not cover the ack.
  using MaySendFn = std::function<bool()>;

  /// Starts a new round: hands `rows` (id order per shard) to librdkafka. After a held row or
  /// a local transient failure its shard's later rows are skipped (they would overtake it);
  /// once `may_send` says no, every row left is skipped. Frees what librdkafka copied.
  /// Returns how many rows were skipped because `may_send` said no.
  std::size_t send(std::vector<Row>& rows, const HoldFn& hold, const MaySendFn& may_send);

  /// Serves delivery reports for up to `wait`; true when the round has none outstanding.
  bool poll(std::chrono::milliseconds wait);

  /// One delivery report of a streamed round (the row at `index` of round `round`).
  struct Report {
    std::uint32_t round = 0;
    std::size_t index = 0;
    Delivery delivery;
  };
  /// What stream() handed over: the round's number, each row's outcome so far (pending:
  /// handed to librdkafka; the others are final), and the rows skipped by `may_send`.
  struct Streamed {
    std::uint32_t round = 0;
    std::vector<Delivery> outcomes;
    std::size_t lease_short = 0;
  };
  /// Pipelined rounds (at_least_once): hands `rows` over like send(), while the rounds
  /// streamed before stay outstanding; their reports come from reports(). Not mixed with
  /// send() on one publisher.
  Streamed stream(std::vector<Row>& rows, const HoldFn& hold, const MaySendFn& may_send);
  /// Serves reports for up to `wait` (sending what is queued at once, linger.ms aside) and
  /// returns those of streamed rounds that came since the last call.
  std::vector<Report> reports(std::chrono::milliseconds wait);
  /// Streamed messages whose report has not come yet.
  [[nodiscard]] std::size_t streaming() const { return static_cast<std::size_t>(m_streaming); }
  /// Fails every message queued or in flight (their reports follow): at stop after the
  /// grace, or after a fatal error.
  void give_up() { purge(); }
  /// The producer hit a fatal error: it delivers nothing more (see replace_if_fatal).
  [[nodiscard]] bool fatal() const { return fatal_error().has_value(); }

  /// Waits for the round's last report. After a fatal producer error the rest is failed at
  /// once; after `stop`, the rest gets stop_grace then is given up. `on_slow` is called each
  /// time nothing came for another `slow_after`. Returns one outcome per row of the round.
  std::vector<Delivery> await(const std::stop_token& stop, std::chrono::milliseconds slow_after,
                              const std::function<void()>& on_slow);

  /// Transactional producers: fences every earlier producer of the id (Kafka aborts its open
  /// transaction, or completes its commit) and waits for that. Throws kafka_call_error.
  void init_transactions(std::chrono::milliseconds timeout);
  /// Starts a transaction (before send). Throws kafka_call_error.
  void begin_transaction();
  /// Adds one record outside the round's rows to the open transaction (a lane's progress);
  /// commit() reports its fate. Throws kafka_call_error when librdkafka refuses it.
  void produce_record(const std::string& topic, int partition, const std::string& key,
                      const std::string& value);
  /// Commits the open transaction, retrying what librdkafka says may be retried; aborts it
  /// when Kafka requires that.
  TxnEnd commit(std::chrono::milliseconds timeout);
  /// Aborts the open transaction (what is queued is purged). False when the producer cannot
  /// abort (fatal): replace it.
  bool abort(std::chrono::milliseconds timeout);

  /// The current round's outcomes so far (after send: pending = handed to librdkafka).
  [[nodiscard]] const std::vector<Delivery>& outcomes() const { return m_outcomes; }

  /// A producer with a fatal error can never produce again: replaces it (call between
  /// rounds). Returns the reason when it did.
  std::optional<std::string> replace_if_fatal();

  /// Messages in librdkafka's queue.
  [[nodiscard]] std::int64_t queue_length() const;
  /// Reports that belonged to no current row (an earlier round's), ignored.
  [[nodiscard]] std::uint64_t late_reports() const { return m_late; }
  /// rd_kafka_flush: waits up to `wait` for everything queued.
  void flush(std::chrono::milliseconds wait);

 private:
  void make_producer();
  [[nodiscard]] std::optional<std::string> fatal_error() const;
  void on_report(const rd_kafka_message_t& m);
  void purge();
  std::uint32_t next_generation();
  // Hands `rows` to librdkafka as round `generation`, setting `outcomes` (one per row);
  // returns {rows skipped by may_send, messages handed over}.
  std::pair<std::size_t, std::size_t> hand_over(std::vector<Row>& rows, const HoldFn& hold,
                                                const MaySendFn& may_send, std::uint32_t generation,
                                                std::vector<Delivery>& outcomes);
  void refresh_metadata(const std::string& topic);

  PublisherOptions m_opt;
  detail::kafka_ptr m_producer;
  std::uint32_t m_generation = 0;
  std::vector<Delivery> m_outcomes;  // of the current round, by row index
  std::size_t m_outstanding = 0;
  std::map<std::uint32_t, std::int64_t> m_streams;  // streamed round -> reports to come
  std::int64_t m_streaming = 0;
  std::vector<Report> m_reports;  // of streamed rounds, since the last reports()
  std::uint64_t m_late = 0;
  // Topics librdkafka said do not exist (in a report or at the hand-over): their metadata is
  // refreshed before rows go to them again, so a topic created meanwhile is used at once.
  std::set<std::string> m_missing;
};

}  // namespace txbox::relay
