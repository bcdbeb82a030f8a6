// The relay benchmark's measurements of txbox itself: txbox-relay draining a backlog, and
// end to end, enqueue commit -> txbox::inbox handler at a paced rate.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "relay_bench_process.hpp"
#include "relay_bench_support.hpp"

namespace bench {

/// One drain by txbox-relay processes.
struct DrainRun {
  double rate = 0;            // msgs/s from the first acknowledged message
  double us_per_msg = 0;      // wall
  double cpu_us_per_msg = 0;  // relay CPU (all relays)
  long rss_kib = 0;           // peak RSS of the first relay
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

/// One end-to-end run.
struct E2eRun {
  double offered = 0, achieved = 0;  // msg/s
  Pct lat;                           // commit -> handler
  long relay_rss = 0, consumer_rss = 0;
  double transactions = -1, commit_s = -1;  // exactly_once: from the relay's /metrics
};

/// k_clients writers enqueue `rate` msg/s for `seconds`, one relay (with NOTIFY or poll-only,
/// and `delivery`) forwards, a txbox::inbox consumer in a child process (its own RSS) handles;
/// `run` numbers the consumer's name.
E2eRun end_to_end(pqxx::connection& c, const std::string& topic, bool notify, double rate,
                  double seconds, int run, Delivery delivery = Delivery::at_least_once);

}  // namespace bench
