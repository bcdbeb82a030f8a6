// txbox::inbox: consumes Kafka topics with exactly-once effects in PostgreSQL. Each message's
// id and the partition's next offset commit in the same transaction as the handler's writes.
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "txbox/error.hpp"
#include "txbox/message.hpp"
#include "txbox/schema_version.hpp"  // inbox_schema_version: the schema version the inbox needs

namespace txbox {

/// A message as the handler sees it.
struct ReceivedMessage {
  std::string id;  ///< ce_id header, else "kafka:<topic>/<partition>/<offset>" (dedupe key)
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> key;  ///< bytes as sent; nullopt for a null key
  std::string payload;
  std::vector<Header> headers{};
  std::chrono::system_clock::time_point timestamp{};  ///< Kafka record timestamp
  int attempt = 1;  ///< 1 on first delivery, higher on retries of a failed handler

  /// The value of the first header called `name`, or nullptr.
  [[nodiscard]] const std::string* header(std::string_view name) const;
};

/// Runs inside the batch's transaction. Throw to fail the message: its writes are rolled
/// back and it is retried, then dead-lettered (or blocks, by policy). Never commit `tx`.
/// A database error that is no fault of the message (a deadlock, a privilege or table
/// missing; thrown or wrapped with std::throw_with_nested) is not a failure of it: the batch
/// is retried, held until fixed for a missing privilege (docs/inbox.md, "Failures").
using Handler = std::function<void(pqxx::work& tx, const ReceivedMessage& message)>;

/// What happens to a message whose handler kept failing.
enum class FailurePolicy {
  dead_letter,  ///< after max_attempts: to inbox_dead with the error; the partition goes on
  block,        ///< retry with backoff forever; the partition waits (order over progress)
};

/// Consumer settings. Plain struct with defaults; Consumer's constructor validates it.
struct ConsumerConfig {
  std::string name;                 ///< inbox identity (required); Kafka group.id defaults to it
  std::vector<std::string> topics;  ///< topics to subscribe to (required)
  std::string database_url;         ///< libpq URI or keyword=value conninfo (required)
  std::string schema = "txbox";
  std::map<std::string, std::string> kafka;  ///< librdkafka properties, passed through
  bool start_from_earliest = true;           ///< where a partition with no stored offset starts
  int max_batch = 500;                       ///< messages per PostgreSQL transaction
  /// Once a batch has its first message, it takes every message already fetched (up to
  /// max_batch) and then waits at most this long for more; 0: never wait (lowest latency;
  /// under load batches still fill from librdkafka's prefetch while a transaction runs).
  std::chrono::milliseconds batch_wait{0};
  int max_attempts = 5;  ///< handler runs before dead-lettering
  FailurePolicy on_failure = FailurePolicy::dead_letter;
  std::chrono::milliseconds retry_backoff_min{100};
  std::chrono::milliseconds retry_backoff_max{30'000};
  std::chrono::hours retention{24 * 7};  ///< inbox rows older than this are deleted
  std::chrono::milliseconds cleanup_interval{600'000};
  int cleanup_batch = 5000;                          ///< rows per cleanup DELETE
  std::chrono::milliseconds requeue_interval{5000};  ///< how often to look for requeued rows
};

/// Counters and gauges of a consumer (Prometheus names in metrics_text()).
struct ConsumerStats {
  std::uint64_t processed = 0;   ///< handler succeeded and committed
  std::uint64_t duplicates = 0;  ///< already in the inbox: skipped
  std::uint64_t dead = 0;        ///< moved to inbox_dead
  std::uint64_t failures = 0;    ///< handler failures (each retried or dead-lettered)
  std::uint64_t requeued = 0;    ///< dead messages processed again after a requeue
  std::uint64_t batches = 0;
  std::uint64_t rebalances = 0;
  std::uint64_t cleaned = 0;           ///< inbox rows removed by retention
  std::uint64_t database_retries = 0;  ///< batches rolled back by a database failure, retried
  bool ready = false;  ///< database and Kafka reachable, no permanent database problem (a
                       ///< consumer may have no partitions)
  std::map<std::string, std::int64_t> lag;            ///< "topic/partition" -> messages behind
  std::vector<double> handler_latency_buckets;        ///< upper bounds, seconds
  std::vector<std::uint64_t> handler_latency_counts;  ///< cumulative per bucket
  std::uint64_t handler_latency_count = 0;
  double handler_latency_sum = 0;
};

/// Consumes `config.topics` and calls the handler once per distinct message id. Example:
///   txbox::Consumer consumer(cfg, [](pqxx::work& tx, const txbox::ReceivedMessage& m) {
///     tx.exec("INSERT INTO projection ...");
///   });
///   consumer.run(stop_source.get_token());
class Consumer {
 public:
  /// Throws config_error on invalid or unsafe settings (enable.auto.commit=true, ...) and
  /// when the database refuses the connection for a reason of configuration (a database that
  /// does not exist, failed authentication, an option value libpq refuses), schema_error when
  /// the schema is missing or too old, transient_error when the database cannot be reached.
  Consumer(ConsumerConfig config, Handler handler);
  ~Consumer();  // leaves the group (revoking partitions) and closes the connections
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  /// Consumes until `stop` is requested, then finishes the batch and leaves the group.
  void run(std::stop_token stop);
  /// Consumes until SIGINT or SIGTERM (handlers installed for the duration of the call).
  void run();
  /// One round: waits up to `timeout` for messages, processes one batch, does due
  /// housekeeping (retries, requeued dead messages, retention). For services with their
  /// own loop; returns the number of messages handled (processed, duplicate or dead).
  std::size_t poll_once(std::chrono::milliseconds timeout);

  /// A snapshot of the metrics (thread-safe).
  [[nodiscard]] ConsumerStats stats() const;
  /// Prometheus text exposition of stats() (thread-safe).
  [[nodiscard]] std::string metrics_text() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

/// Reads consumer settings: TOML file (empty: none), then TXBOX_* environment variables,
/// then `overrides`. Keys: consumer.name, consumer.topics, database.url, database.schema,
/// consumer.* tuning, kafka.*. Throws config_error naming the key and what is wrong.
ConsumerConfig load_consumer_config(const std::string& toml_path,
                                    const std::map<std::string, std::string>& overrides = {});

/// Checks a config without connecting; throws config_error.
void validate_consumer_config(const ConsumerConfig& config);

}  // namespace txbox
