// What the relay benchmark's measurements share: the servers and the relay binary, the
// message shape, the clock, progress and figure output, percentiles, Kafka clients, and
// the outbox's reset and bulk fill.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "txbox/detail/rdkafka.hpp"

namespace bench {

using clk = std::chrono::steady_clock;

extern std::string g_pg, g_kafka, g_relay;  ///< the database, the broker, txbox-relay's path
extern const std::string k_payload;         ///< an order-event-sized payload (200 B)
inline constexpr int k_keys = 1000;         ///< keys the messages are spread over
inline constexpr int k_clients = 2;         ///< writer connections (the machine has 2 cores)
extern FILE* g_out;                         ///< --out: "name<TAB>value" lines, or null

/// Seconds from `t` to now.
double seconds_since(clk::time_point t);
/// The steady clock in nanoseconds (CLOCK_MONOTONIC: the same in every process).
std::int64_t now_ns();
/// A progress line on stderr, stamped with the local time.
void progress(const std::string& what);
/// A figure to --out, if given.
void record(const std::string& name, double value);
/// Message i's key: one of k_keys.
std::string key_of(long i);
/// Enqueues one message per key (k_keys) to `topic` with `payload`, in one transaction: a
/// warm-up that reaches every shard (and, in exactly_once, every lane).
void enqueue_one_per_key(pqxx::connection& c, const std::string& topic, const std::string& payload);

/// Latency percentiles in milliseconds (-1 without samples) and the sample count.
struct Pct {
  double p50 = -1, p99 = -1, p999 = -1;
  std::size_t n = 0;
};
/// Percentiles of samples in seconds, returned in milliseconds.
Pct percentiles(std::vector<double> v);

/// A librdkafka client on g_kafka with `extra` settings. Throws std::runtime_error.
txbox::detail::kafka_ptr make_client(rd_kafka_type_t type,
                                     const std::map<std::string, std::string>& extra);
/// A producer with the relay's settings: acks=all, idempotent, linger.ms=5.
txbox::detail::kafka_ptr make_producer();
/// A consumer of `topic` in `group`, from the earliest or the latest offset.
txbox::detail::kafka_ptr make_consumer(const std::string& topic, const std::string& group,
                                       bool earliest);
/// Creates the topic with `partitions` partitions (whatever the broker's num.partitions), then
/// produces one message ("warm-up") and waits for its ack. Returns the producer, which then
/// knows the topic's leaders.
txbox::detail::kafka_ptr create_topic(const std::string& topic, int partitions = 1);

/// Empties the outbox, its dead letters, leases and relays; VACUUM ANALYZE.
void reset_schema(pqxx::connection& c);
/// `n` pending rows of `topic` written by SQL in one transaction, shaped like enqueue's, over
/// 1000 keys; then VACUUM ANALYZE unless relays are already waiting for the rows.
void fill_sql(pqxx::connection& c, const std::string& topic, long n, bool relays_running = false);

}  // namespace bench
