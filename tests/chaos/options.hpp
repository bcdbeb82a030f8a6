// The chaos driver's command line: what to run (the workload, how many faults, relays,
// consumers and partitions), the timeouts, and where.
#pragma once

#include <string>

#include "workload.hpp"

namespace chaos {

/// Everything the command line sets, with the defaults that --help names.
struct Options {
  Workload work;
  bool seed_given = false;
  int faults = 30;
  int relays = 3;
  int consumers = 2;
  int partitions = 6;
  int brokers = 1;  // 3: a replicated cluster, with leader kills, broker pauses and disk loss
  double drain_timeout_s = 300;
  int stall_timeout_s = 90;  // the drain gives up when nothing moved for this long
  int lease_ttl_ms = 4000;
  int session_timeout_ms = 3000;
  // A relay's produce -> ack -> delete cycle lasts at least linger.ms: long enough that
  // connection resets and restarts land on batches in flight, whose rows are then re-sent.
  int relay_linger_ms = 100;
  std::string dir;
  bool keep = false;
  // PostgreSQL as primary + synchronous standby, the pg_failover fault, relays with
  // --wait-for-standbys 1 (pg_failover.cpp).
  bool pg_failover = false;
  // The relays with --exactly-once (Kafka transactions); the log audit's duplicate and
  // stale copies then count as violations.
  bool exactly_once = false;
};

/// Parses argv; prints the usage and exits 0 on --help, 2 on a bad option or value. Draws a
/// random seed when --seed is not given.
Options parse_options(int argc, char** argv);

}  // namespace chaos
