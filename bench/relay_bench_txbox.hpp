// The relay benchmark's measurements of txbox itself: txbox-relay draining a backlog (end to
// end runs: relay_bench_e2e).
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "relay_bench_process.hpp"
#include "relay_bench_support.hpp"

namespace bench {

/// A consumer of the `partitions` partitions of `topic` from their beginning, read_committed:
/// counts what reached Kafka.
txbox::detail::kafka_ptr make_counter(const std::string& topic, int partitions = 1);
/// Counts messages (other than the warm-up) until `n` or `until`; returns the count.
long count_until(rd_kafka_t* c, long n, clk::time_point until);
/// Waits (up to 60 s) until `relays` live relays share the 64 shards.
void await_leases(pqxx::connection& c, int relays);

/// One drain by txbox-relay processes.
struct DrainRun {
  double rate = 0;            // msgs/s from the first acknowledged message
  double us_per_msg = 0;      // wall
  double cpu_us_per_msg = 0;  // relay CPU (all relays)
  CpuSplit cpu;               // the machine's CPU seconds over the drain, by who
  double msgs = 0;            // messages measured
  long rss_kib = 0;           // peak RSS of the first relay
  double first_s = -1;        // the first message read back, s after the start (-1: unknown)
  // exactly_once only (the relays' /metrics after the drain, summed; -1 unknown): Kafka
  // transactions committed and aborted, seconds spent committing them.
  double transactions = -1, aborted = -1, commit_s = -1;
};

/// `relays` relays with `delivery`, started on an empty outbox and sharing its shards, drain
/// the first `measure` rows of a backlog of `backlog` rows that commits in one transaction, to
/// a topic created with `partitions` partitions.
/// Timed from that commit to the `measure`-th message read back from Kafka (read_committed;
/// start-up, a warm-up row per key through the relays, and the fill excluded; wake-up, claims,
/// produce and acks or transaction commits included).
DrainRun relay_drain(pqxx::connection& c, const std::string& topic, long backlog, long measure,
                     int relays, Delivery delivery = Delivery::at_least_once, int partitions = 1);

}  // namespace bench
