// txbox::relay: publishes the outbox to Kafka (acks=all, idempotent), in id order per shard,
// one relay per shard at a time (leases with epochs), rows deleted only after the ack.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "txbox/error.hpp"
#include "txbox/schema_version.hpp"  // relay_schema_version: the schema version this relay needs

namespace txbox {

/// How the relay's messages reach the Kafka log (relay.delivery).
enum class Delivery {
  /// Every message at least once: a relay that dies between Kafka's ack and its DELETE, or
  /// that stalls past its lease, sends a copy again (a txbox inbox absorbs it).
  at_least_once,
  /// Kafka transactions, fenced per lane of shards, with the progress in the transaction: a
  /// read_committed consumer sees every message exactly once (docs/guarantees.md). Needs
  /// migration V5.
  exactly_once,
};

/// Relay settings. Plain struct with defaults; Relay's constructor validates it.
struct RelayConfig {
  std::string database_url;  ///< libpq URI or keyword=value conninfo (required)
  std::string schema = "txbox";
  std::map<std::string, std::string> kafka;  ///< librdkafka properties, passed through
  std::string name;                          ///< relay identity; default host:pid
  int batch_size = 500;                      ///< rows claimed per shard per round
  /// Bounds the memory of a round: the rows claimed at once (over all owned shards) add up
  /// to at most this many bytes, counting payload, key and headers plus ~1 KiB per message
  /// for the relay's and librdkafka's bookkeeping (at least one row per round is taken).
  /// Also the default of kafka queue.buffering.max.kbytes. With 200-byte messages the
  /// default cuts a 64-shard round to ~24,000 rows and peak RSS to ~54 MiB (16 MiB: ~12,000
  /// rows, ~35 MiB, at some throughput cost: rounds have a fixed cost).
  std::size_t max_batch_bytes = 32u << 20;
  /// An idle relay claims at least this often, whatever the probe sees (the safety net).
  std::chrono::milliseconds poll_interval{500};
  /// The wake-up: an idle relay reads the outbox's id sequence and the running transactions
  /// (one trivial query) every millisecond after a sign of work, backing off to this; it claims
  /// when a writer inserted or a transaction that may have written committed. 0: no probe
  /// (poll_interval and NOTIFY only). See docs/operations.md, "How relays wake up".
  std::chrono::milliseconds probe_interval{10};
  std::chrono::milliseconds lease_ttl{10'000};  ///< a dead relay's shards move after this
  /// Also LISTEN on "<schema>.outbox". Writers no longer NOTIFY (migration V6): only for a
  /// NOTIFY an application sends itself, outside its business transactions.
  bool listen_notify = false;
  /// Refuse topics with replication factor < 3, min.insync.replicas < 2 or unclean leader
  /// election: at start (exit), and for a topic first seen later (its rows wait in the outbox).
  bool strict_durability = false;
  /// Topics whose durability is checked at start besides those already in the outbox.
  std::vector<std::string> durability_topics;
  std::chrono::milliseconds retry_backoff_min{200};
  std::chrono::milliseconds retry_backoff_max{30'000};
  /// The phantom guard: a claimed round goes to Kafka only after this many physical standbys
  /// flushed the WAL the claim saw (pg_stat_replication; the database user needs pg_monitor).
  /// Fewer connected or caught up: the rows wait in the outbox. 0: off.
  int wait_for_standbys = 0;
  /// The standbys wait_for_standbys counts, matched against pg_stat_replication's
  /// application_name. Empty: every physical walsender with a flush position, except those in
  /// the backup state and the WAL streams of pg_receivewal and pg_basebackup (their default
  /// application_name): archivers, which a promotion cannot go to.
  std::vector<std::string> standby_names;
  std::string http_listen;  ///< "host:port" for /metrics, /healthz, /readyz; empty: off
  Delivery delivery = Delivery::at_least_once;
  /// exactly_once: the compacted topic holding each lane's last committed transaction; empty:
  /// txbox-progress-<outbox id> (created by the relay when missing).
  std::string progress_topic;
};

/// Counters and gauges of a running relay (Prometheus names in /metrics).
struct RelayStats {
  std::map<std::string, std::uint64_t> published_by_topic;
  std::uint64_t failed = 0;  ///< transient delivery failures (retried)
  std::uint64_t dead = 0;    ///< rows moved to outbox_dead
  std::uint64_t lease_changes = 0;
  std::size_t shards_owned = 0;
  std::int64_t backlog_rows = -1;  ///< pending rows in the outbox (-1: unknown yet)
  double oldest_pending_seconds = 0;
  bool ready = false;            ///< database and Kafka reachable, no permanent database problem
  bool kafka_reachable = false;  ///< the brokers answered the last probe
  bool database_misconfigured = false;            ///< a permanent database problem is being retried
  std::vector<double> ack_latency_buckets;        ///< upper bounds, seconds
  std::vector<std::uint64_t> ack_latency_counts;  ///< cumulative per bucket
  std::uint64_t ack_latency_count = 0;
  double ack_latency_sum = 0;
  std::int64_t producer_queue = 0;
  std::uint64_t producer_restarts = 0;  ///< producers replaced after a fatal error
  std::set<std::string> weak_topics;    ///< checked topics below the durability minimum
  std::map<std::string, std::uint64_t> held_by_topic;  ///< rows held back by strict durability
  std::uint64_t database_failures = 0;  ///< failed database steps (the round was retried)
  std::uint64_t fenced_rows = 0;        ///< acknowledged rows left to a shard's new owner (fence)
  std::uint64_t late_reports = 0;       ///< delivery reports of an earlier round, ignored
  /// Partitions of the waiting round's topics with fewer in-sync replicas than their
  /// min.insync.replicas (Kafka refuses acks=all writes to them); 0 once deliveries succeed.
  std::size_t partitions_below_min_isr = 0;
  std::size_t standby_held_rows = 0;         ///< rows of the last round held for the standbys
  std::size_t standbys_flushed = 0;          ///< standbys past the last round's WAL point
  std::uint64_t standby_holds = 0;           ///< rounds held because too few standbys caught up
  double standby_wait_seconds = 0;           ///< time rounds spent waiting for the standbys
  std::uint64_t transactions_committed = 0;  ///< exactly_once: Kafka transactions committed
  std::uint64_t transactions_aborted = 0;    ///< exactly_once: aborted (their rows re-sent)
  double commit_seconds_sum = 0;             ///< exactly_once: time in commit_transaction
  std::uint64_t commit_count = 0;            ///< exactly_once: commit_transaction calls timed
  /// exactly_once: rows deleted at a lane's takeover without a re-send (its previous owner's
  /// last transaction committed in Kafka, the DELETE did not).
  std::uint64_t recovered_rows = 0;
  std::size_t lanes_owned = 0;  ///< exactly_once: lanes (8 shards each) this relay publishes
  /// exactly_once: commit_transaction times as a histogram: upper bounds (seconds) and
  /// cumulative counts per bucket (the total and the sum: commit_count, commit_seconds_sum).
  std::vector<double> commit_seconds_buckets;
  std::vector<std::uint64_t> commit_seconds_counts;
};

/// A target topic is below the durability minimum and strict_durability is on. Fix the topic
/// (the message names the setting, its value and the command), or turn strict_durability off.
class durability_error : public error {
 public:
  using error::error;
};

/// Publishes the outbox until stopped. Example:
///   txbox::Relay relay(cfg);               // validates config, checks the schema version
///   relay.run(stop_source.get_token());    // returns after a clean shutdown
class Relay {
 public:
  /// Throws config_error on invalid or unsafe settings (e.g. acks other than all,
  /// enable.idempotence=false, wait_for_standbys > 0 for a database user without pg_monitor),
  /// schema_error when the schema is missing or too old,
  /// also config_error when the database refuses the connection for a reason of configuration
  /// (a database that does not exist, failed authentication, an option value libpq refuses),
  /// transient_error when the database cannot be reached, durability_error when
  /// strict_durability is on and a topic in the outbox or in durability_topics is weak.
  /// Checks the durability of those topics (blocks up to a few seconds when Kafka is down:
  /// then they are checked again before their first message is published).
  explicit Relay(RelayConfig config);
  ~Relay();  // may block briefly: releases leases and flushes the producer
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  /// Runs the publish loop until `stop` is requested: then stops claiming, finishes the
  /// in-flight batch, releases its leases and returns. Database and broker outages are
  /// retried with backoff; only a configuration or schema problem throws.
  void run(std::stop_token stop);

  /// A snapshot of the metrics (thread-safe).
  [[nodiscard]] RelayStats stats() const;

  /// Prometheus text exposition of stats().
  [[nodiscard]] std::string metrics_text() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

/// Constructs a Relay the way the txbox-relay daemon starts: while the database cannot be
/// reached (transient_error) it tries again with backoff (200 ms doubling to 10 s), and while
/// a privilege or object the relay needs is missing (a permanent database error with a hint)
/// every retry_backoff_max. The reason is logged at once ("...; retrying with backoff"), then
/// every minute while it lasts ("still retrying with backoff, for <n> s now"). Returns nullptr
/// when `stop` is requested first. Throws what Relay's constructor throws for anything a retry
/// cannot fix: config_error, schema_error, durability_error, other database errors. Example:
///   auto relay = txbox::start_relay(cfg, stop_source.get_token());
///   if (relay) relay->run(stop_source.get_token());
[[nodiscard]] std::unique_ptr<Relay> start_relay(const RelayConfig& config, std::stop_token stop);

/// Reads relay settings: TOML file (may be empty: none), then TXBOX_* environment variables,
/// then `overrides` (from flags). Throws config_error naming the key and what is wrong.
RelayConfig load_relay_config(const std::string& toml_path,
                              const std::map<std::string, std::string>& overrides = {});

/// Checks a config without connecting: required keys, ranges, Kafka durability settings.
/// Throws config_error.
void validate_relay_config(const RelayConfig& config);

/// A config for printing: passwords and secrets replaced by "***".
std::string describe_relay_config(const RelayConfig& config);

}  // namespace txbox
