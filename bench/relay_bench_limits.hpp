// The relay benchmark's limits, the baselines txbox is measured against: bare INSERT and
// enqueue rates, one commit's time, raw librdkafka produce, consume and latency, and a raw
// claim + delete drain of the outbox.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "relay_bench_support.hpp"

namespace bench {

/// Rows per second written by k_clients connections for `seconds`, `rows` rows per
/// transaction, either as a bare INSERT or through txbox::Outbox::enqueue.
double insert_rate(const std::string& topic, int rows, bool use_enqueue, double seconds);
/// Median time in ms of one single-row commit (an enqueue transaction) from one client.
double one_commit_ms(const std::string& topic);
/// Messages per second of `n` raw, batched produces (the relay's producer settings).
double raw_produce(const std::string& topic, int n);
/// Messages per second of a raw consume of the first `n` messages, from the first message.
double raw_consume(const std::string& topic, int n);
/// Raw produce -> consume latency at `rate` msg/s for `seconds`.
Pct raw_latency(const std::string& topic, int rate, double seconds);
/// Rows per second of claims (a shard's head, 500 rows) + DELETE by id until `n` rows.
double raw_drain(pqxx::connection& c, int n);

}  // namespace bench
