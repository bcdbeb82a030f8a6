// The relay benchmark's table: the figures against the limits and the targets, both delivery
// modes.
#include "relay_bench_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace bench {
namespace {

std::string mib(long kib) {
  return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024);
}
const char* verdict(bool ok) {
  return ok ? "**met**" : "**missed**";
}

// exactly_once's drains against at_least_once's, and where their time went.
void print_eos_throughput(const Figures& f) {
  for (const auto& [k, r] : f.relay_eos) {
    const double ratio = r.rate / f.relay.at(k).rate;
    std::printf(
        "| txbox-relay ×%d, exactly_once, %d partitions | %.0f msg/s | %.2f× at_least_once ×%d | "
        "≥ %.1f× %s |\n",
        k, k_partitions, r.rate, ratio, k, k_eos_target, verdict(ratio >= k_eos_target));
    if (r.transactions <= 0) continue;
    // Per relay: the share of the drain's wall time spent in commit_transaction.
    const double wall = static_cast<double>(f.n) / r.rate;
    std::printf(
        "| exactly_once ×%d: Kafka transactions (%.0f aborted), messages per transaction, mean "
        "commit, time committing | %.0f, %.0f msg, %.1f ms, %.0f%% | | |\n",
        k, r.aborted, r.transactions, static_cast<double>(f.n) / r.transactions,
        1000 * r.commit_s / r.transactions, 100 * r.commit_s / k / wall);
  }
}

// Kafka's limits and the limit each relay drain is compared with.
void print_kafka_limits(const Figures& f) {
  const auto perf = [](double rate) {
    return rate > 0 ? fmt::format("{:.0f} msg/s", rate) : std::string("not run");
  };
  std::printf(
      "| Kafka's ProducerPerformance (Java), acks=all, idempotent, linger 5 ms, 1 MB batches, "
      "300 B records, %d partitions | %s | | |\n",
      k_partitions, perf(f.perf).c_str());
  std::printf("| Kafka's ProducerPerformance, 1 partition | %s | | |\n", perf(f.perf_1p).c_str());
  std::printf(
      "| raw librdkafka produce, acks=all, idempotent, batched, %d partitions (for information) | "
      "%.0f msg/s | | |\n",
      k_partitions, f.produce);
  std::printf("| raw librdkafka produce, 1 partition (for information) | %.0f msg/s | | |\n",
              f.produce_1p);
  std::printf("| raw librdkafka consume, %d partitions | %.0f msg/s | | |\n", k_partitions,
              f.consume);
  const auto source = [](double rate) {
    return rate > 0 ? "ProducerPerformance" : "raw librdkafka produce (no ProducerPerformance)";
  };
  std::printf("| **limit**, %d partitions: min(%s, raw drain) | **%.0f msg/s** | | |\n",
              k_partitions, source(f.perf), f.limit);
  std::printf("| limit, 1 partition: min(%s, raw drain) | %.0f msg/s | | |\n", source(f.perf_1p),
              f.limit_1p);
}

// The relay drains against the limit, with their CPU, and issue 17's targets.
void print_relay_throughput(const Figures& f) {
  const auto dbz = std::find_if(f.peers.begin(), f.peers.end(),
                                [](const auto& p) { return p.first.starts_with("debezium"); });
  for (const auto& [k, r] : f.relay) {
    const double ratio = r.rate / f.limit;
    std::string target;
    if (k == 1) {
      target = fmt::format("≥ {:.1f}× limit {}", k_limit_target, verdict(ratio >= k_limit_target));
      if (dbz != f.peers.end()) {
        const double x = r.rate / dbz->second;
        target += fmt::format("; {:.1f}× Debezium (≥ {:.0f}× {})", x, k_debezium_target,
                              verdict(x >= k_debezium_target));
      }
    } else if (f.relay.contains(1)) {
      const double x = r.rate / f.relay.at(1).rate;
      target = fmt::format("{:.2f}× relay ×1{}", x,
                           k == 4 ? fmt::format(" (≥ 1× {})", verdict(x >= 1)) : "");
    }
    std::printf(
        "| txbox-relay ×%d, %d partitions | %.0f msg/s, %.1f µs relay CPU/msg | %.2f× limit | %s "
        "|\n",
        k, k_partitions, r.rate, r.cpu_us_per_msg, ratio, target.c_str());
  }
  // Where the time went: the machine's CPU per message over each drain, by who.
  for (const auto& [k, r] : f.relay) {
    const double n = r.msgs;
    if (n <= 0 || r.cpu.total <= 0) continue;
    const auto per = [&](double s) { return s * 1e6 / n; };
    const double other = r.cpu.busy - r.cpu.postgres - r.cpu.broker - r.cpu.relay - r.cpu.bench;
    std::printf(
        "| CPU per message in relay ×%d: PostgreSQL / broker / relay / bench's counter / other | "
        "%.1f / %.1f / %.1f / %.1f / %.1f µs | machine %.0f%% busy | |\n",
        k, per(r.cpu.postgres), per(r.cpu.broker), per(r.cpu.relay), per(r.cpu.bench), per(other),
        100 * r.cpu.busy / r.cpu.total);
  }
  for (const auto& [k, r] : f.relay_1p) {
    std::printf(
        "| txbox-relay ×%d, 1 partition | %.0f msg/s, %.1f µs relay CPU/msg | %.2f× limit at 1 "
        "partition | |\n",
        k, r.rate, r.cpu_us_per_msg, r.rate / f.limit_1p);
  }
}

}  // namespace

void print_table(const Figures& f) {
  std::printf(
      "\n| measure (%d messages of %zu B, %d keys; relay drains and peers on %d partitions unless "
      "marked; PostgreSQL %s) | value | ratio | target |\n",
      f.n, k_payload.size(), k_keys, k_partitions, f.durability.c_str());
  std::printf("|---|---:|---:|---|\n");
  std::printf("| **limits** | | | |\n");
  std::printf("| bare INSERT of an outbox row, 1 row/tx, 2 clients | %.0f tx/s | | |\n", f.bare1);
  std::printf("| bare INSERT, 100 rows/tx, 2 clients | %.0f tx/s (%.0f rows/s) | | |\n", f.bare100,
              f.bare100 * 100);
  std::printf("| one single-row commit, 1 client (p50) | %.2f ms | | |\n", f.commit_ms);
  std::printf("| raw claim+delete drain (500-row batches, SKIP LOCKED) | %.0f rows/s | | |\n",
              f.drain);
  if (f.drain_cpu.total > 0) {
    std::printf(
        "| CPU per row in the raw drain: PostgreSQL / bench | %.1f / %.1f µs | machine %.0f%% busy "
        "| |\n",
        f.drain_cpu.postgres * 1e6 / f.n, f.drain_cpu.bench * 1e6 / f.n,
        100 * f.drain_cpu.busy / f.drain_cpu.total);
  }
  print_kafka_limits(f);
  print_raw_latency_row(f);
  std::printf("| **txbox** | | | |\n");
  std::printf("| enqueue, 1 msg/tx, 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n", f.enq1,
              f.enq1 / f.bare1, verdict(f.enq1 / f.bare1 >= 0.9));
  std::printf(
      "| enqueue, 100 msgs/tx (batch form), 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n",
      f.enq100, f.enq100 / f.bare100, verdict(f.enq100 / f.bare100 >= 0.9));
  print_relay_throughput(f);
  print_eos_throughput(f);
  for (const auto& [name, rate] : f.peers) {
    std::printf("| peer: %s | %.0f msg/s | %.2f× limit | |\n", name.c_str(), rate, rate / f.limit);
  }
  print_latency_rows(f);
  if (f.inbox_ratio > 0) {
    std::printf(
        "| txbox::inbox, max_batch 500 (see inbox table) | | %.2f× raw consume+INSERT | |\n",
        f.inbox_ratio);
  }
  std::printf("| relay peak RSS (max over runs) | %s | | ≤ 64 MiB %s |\n", mib(f.relay_rss).c_str(),
              verdict(f.relay_rss <= 64 * 1024));
  std::printf("| inbox consumer peak RSS (latency runs) | %s | | |\n", mib(f.consumer_rss).c_str());
  print_backlog_rows(f);
}

}  // namespace bench
