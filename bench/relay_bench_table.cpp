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
        "| txbox-relay ×%d, exactly_once | %.0f msg/s | %.2f× at_least_once ×%d | ≥ %.1f× %s |\n",
        k, r.rate, ratio, k, k_eos_target, verdict(ratio >= k_eos_target));
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

}  // namespace

void print_table(const Figures& f) {
  std::printf(
      "\n| measure (%d messages of %zu B, %d keys, 1 partition) | value | ratio | target |\n", f.n,
      k_payload.size(), k_keys);
  std::printf("|---|---:|---:|---|\n");
  std::printf("| **limits** | | | |\n");
  std::printf("| bare INSERT of an outbox row, 1 row/tx, 2 clients | %.0f tx/s | | |\n", f.bare1);
  std::printf("| bare INSERT, 100 rows/tx, 2 clients | %.0f tx/s (%.0f rows/s) | | |\n", f.bare100,
              f.bare100 * 100);
  std::printf("| one single-row commit, 1 client (p50) | %.2f ms | | |\n", f.commit_ms);
  std::printf("| raw claim+delete drain (500-row batches, SKIP LOCKED) | %.0f rows/s | | |\n",
              f.drain);
  std::printf("| raw librdkafka produce, acks=all, idempotent, batched | %.0f msg/s | | |\n",
              f.produce);
  std::printf("| raw librdkafka consume | %.0f msg/s | | |\n", f.consume);
  print_raw_latency_row(f);
  std::printf("| **txbox** | | | |\n");
  std::printf("| enqueue, 1 msg/tx, 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n", f.enq1,
              f.enq1 / f.bare1, verdict(f.enq1 / f.bare1 >= 0.9));
  std::printf(
      "| enqueue, 100 msgs/tx (batch form), 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n",
      f.enq100, f.enq100 / f.bare100, verdict(f.enq100 / f.bare100 >= 0.9));
  for (int k : {1, 2, 4}) {
    const double ratio = f.relay.at(k).rate / f.limit;
    std::string target = fmt::format("≥ 0.5× {}", verdict(ratio >= 0.5));
    if (!f.peers.empty()) {
      double best = 0;
      for (const auto& [name, rate] : f.peers) best = std::max(best, rate);
      target += fmt::format("; {:.1f}× best peer (≥ 3× {})", f.relay.at(k).rate / best,
                            verdict(f.relay.at(k).rate >= 3 * best));
    }
    std::printf("| txbox-relay ×%d | %.0f msg/s | %.2f× min(drain, produce) | %s |\n", k,
                f.relay.at(k).rate, ratio, target.c_str());
  }
  print_eos_throughput(f);
  for (const auto& [name, rate] : f.peers) {
    std::printf("| peer: %s | %.0f msg/s | %.2f× min(drain, produce) | |\n", name.c_str(), rate,
                rate / f.limit);
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
