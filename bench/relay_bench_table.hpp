// The relay benchmark's figures of a run and the markdown table that compares them with the
// limits and with issue 7's and issue 17's targets.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "relay_bench_backlog.hpp"
#include "relay_bench_e2e.hpp"
#include "relay_bench_support.hpp"
#include "relay_bench_txbox.hpp"

namespace bench {

/// Everything the table shows, as measured.
struct Figures {
  int n = 0;                                            ///< messages per throughput run
  std::vector<long> backlogs = {10'000, 1'000'000};     ///< pending rows of the cost runs
  std::vector<std::pair<std::string, double>> peers;    ///< --peer NAME=MSGS_PER_S
  double inbox_ratio = -1;                              ///< --inbox-ratio, or -1
  double bare1 = 0, enq1 = 0, bare100 = 0, enq100 = 0;  ///< INSERT tx/s
  double commit_ms = 0;                                 ///< one single-row commit, p50
  std::string durability;  ///< PostgreSQL's fsync and synchronous_commit, as the server says
  double produce = 0, consume = 0, drain = 0;  ///< raw msg/s (k_partitions), rows/s
  double produce_1p = 0;                       ///< raw librdkafka produce, 1 partition
  CpuSplit drain_cpu;                          ///< the machine's CPU over the raw drain
  double perf = -1, perf_1p = -1;  ///< Kafka's ProducerPerformance (--producer-perf-*), or -1
  double limit = 0;                ///< the limit at k_partitions: min(drain, ProducerPerformance)
  double limit_1p = 0;  ///< at 1 partition (raw librdkafka produce instead without --producer-perf)
  std::map<int, DrainRun> relay;                ///< k_partitions, by relay count: 1, 2, 4
  std::map<int, DrainRun> relay_1p;             ///< 1 partition, by relay count: 1, 2
  std::map<int, DrainRun> relay_eos;            ///< exactly_once, by count: 1, 2
  LatencyFigures lat;                           ///< commit->handler at load
  long relay_rss = 0, consumer_rss = 0;         ///< peak RSS, KiB
  std::vector<std::pair<long, DrainRun>> cost;  ///< by pending rows (SQL fill)
  BigBacklog big;                               ///< --big N: n, then the run
  bool only_latency = false;                    ///< --only latency
};

/// The partitions of the headline runs' topics (the relay drains, exactly_once's, the peers').
inline constexpr int k_partitions = 6;
/// Issue 17's targets: relay x1 at least this share of the limit, and this multiple of Debezium.
inline constexpr double k_limit_target = 0.9, k_debezium_target = 3;

/// The target of issue 15: exactly_once throughput at least this share of at_least_once's.
inline constexpr double k_eos_target = 0.7;

/// Prints the table to stdout.
void print_table(const Figures& f);

// The rows of relay_bench_table_load.cpp: the raw latency among the limits, commit->handler at
// load, cost vs backlog.
void print_raw_latency_row(const Figures& f);
void print_latency_rows(const Figures& f);
/// The latency rows alone, with their header (--only latency).
void print_latency_table(const Figures& f);
void print_backlog_rows(const Figures& f);

}  // namespace bench
