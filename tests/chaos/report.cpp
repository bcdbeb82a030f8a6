// The chaos driver's account of a run: number formatting and the result table.
#include "report.hpp"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <ctime>
#include <iostream>

namespace chaos {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string group(std::int64_t n) {  // 12345 -> 12,345
  std::string s = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return (n < 0 ? "-" : "") + out;
}

int report(const Options& o, const Tally& t, const WriterStats& ws, const Verdict& v,
           const std::optional<LogAudit>& log, bool drain_ok, double wall_s) {
  // In exactly-once mode offsets are no record count (transaction markers take some).
  const std::int64_t records = o.exactly_once ? (log ? log->records : -1) : v.kafka_records;
  const std::int64_t absorbed = records >= 0 ? records - v.inbox_rows : -1;
  const bool consumed_all = v.kafka_records >= 0 && v.consumed == v.kafka_records;
  std::vector<std::string> violations;
  const auto check = [&](bool bad, const std::string& what) {
    if (bad) violations.push_back(what);
  };
  check(
      v.committed != o.work.messages || v.poison != o.work.poison || v.oversize != o.work.oversize,
      fmt::format("the writers committed {} + {} + {} messages, not {} + {} + {}", v.committed,
                  v.poison, v.oversize, o.work.messages, o.work.poison, o.work.oversize));
  check(v.lost > 0, fmt::format("{} committed message(s) never applied", v.lost));
  check(v.duplicate_effects > 0, fmt::format("{} duplicate effect(s)", v.duplicate_effects));
  check(v.order_violations > 0, fmt::format("{} per-key order violation(s)", v.order_violations));
  check(v.phantom > 0, fmt::format("{} effect(s) of no committed message", v.phantom));
  check(v.outbox_left > 0, fmt::format("{} row(s) left in the outbox", v.outbox_left));
  check(v.inbox_dead_unexpected + v.outbox_dead_unexpected > 0,
        fmt::format("{} unexpected dead letter(s)",
                    v.inbox_dead_unexpected + v.outbox_dead_unexpected));
  check(v.poison_missing + v.oversize_missing > 0,
        fmt::format("{} injected bad message(s) not dead-lettered",
                    v.poison_missing + v.oversize_missing));
  check(!consumed_all,
        fmt::format("consumers stopped at {} of {} Kafka records", v.consumed, v.kafka_records));
  check(!drain_ok, "the pipeline did not drain (stalled, or the drain timeout passed)");
  check(!t.unexpected_exits.empty(),
        fmt::format("{} unexpected process exit(s)", t.unexpected_exits.size()));
  check(!t.unclean_stops.empty(),
        fmt::format("{} process(es) did not stop cleanly on SIGTERM", t.unclean_stops.size()));
  // Stale copies leaving their key behind: at least once, only a lease that expired under rows
  // in flight explains one (a relay stalled, or without its database for longer than the ttl:
  // its earlier hand-overs land later; Kafka cannot fence them).
  std::int64_t behind = 0, behind_expired = 0;
  std::vector<std::string> behind_examples;
  if (log) {
    for (const auto& b : log->behind) {
      const bool expired = std::any_of(
          t.lease_risks_ms.begin(), t.lease_risks_ms.end(),
          [&](std::int64_t at) { return b.created_ms <= at && at <= b.newer_created_ms; });
      (expired ? behind_expired : behind) += b.copies;
      if (!expired && behind_examples.size() < 10) behind_examples.push_back(b.example);
    }
  }
  if (!o.exactly_once) {
    check(!log, "the log audit failed: " + t.audit_error);
    check(behind > 0, fmt::format("{} stale copies in the log leaving their key behind (no relay "
                                  "stall or database outage between them and the newer message)",
                                  behind));
  }
  if (o.exactly_once) {  // the log itself: each message once, no stale copy, nothing open
    check(!log, "the log audit failed: " + t.audit_error);
    if (log) {
      check(log->duplicate_copies > 0,
            fmt::format("{} duplicate copies in the log", log->duplicate_copies));
      check(log->stale_copies > 0, fmt::format("{} stale copies in the log", log->stale_copies));
      check(log->without_id > 0, fmt::format("{} record(s) without an id", log->without_id));
      check(log->distinct_ids != v.committed + v.poison,
            fmt::format("{} distinct ids in the log, not the {} committed + poison",
                        log->distinct_ids, v.committed + v.poison));
      check(log->open_partitions > 0,
            fmt::format("{} partition(s) held by a transaction that stayed open",
                        log->open_partitions));
    }
  }

  const auto row = [](const std::string& label, const std::string& value,
                      const std::string& note = {}) {
    std::cout << fmt::format("  {:<34}{:>12}{}\n", label, value, note.empty() ? "" : "   " + note);
  };
  std::cout << "\n"
            << fmt::format("txbox chaos result — seed {}, {}\n", o.work.seed,
                           fmt::format("{} keys, {} writers, {} relays, {} consumers ({}), {} "
                                       "partitions, {} broker(s)",
                                       o.work.keys, o.work.writers, o.relays, o.consumers,
                                       t.assignment, o.partitions, o.brokers));
  row("messages committed", group(v.committed),
      fmt::format("+ {} poison, {} oversize injected", v.poison, v.oversize));
  row("records in Kafka", records >= 0 ? group(records) : "?",
      o.exactly_once ? "read_committed, by the log audit" : "");
  row("faults injected", group(t.faults_done),
      t.postponed > 0 ? fmt::format("{} waited for an eligible target", t.postponed) : "");
  for (std::size_t k = 0; k < k_fault_kinds; ++k) {
    if (!applies(static_cast<Fault>(k), o.brokers == 3, o.pg_failover)) continue;
    row("  " + std::string(fault_name(static_cast<Fault>(k))), group(t.fault_counts[k]));
  }
  row("  backends terminated", group(t.terminated_backends));
  row("lost", group(v.lost));
  row("duplicate effects", group(v.duplicate_effects));
  row("order violations", group(v.order_violations));
  row("phantom effects", group(v.phantom));
  row("duplicates absorbed by the inbox", absorbed >= 0 ? group(absorbed) : "?",
      "Kafka records - distinct messages consumed");
  row("log: duplicate copies", log ? group(log->duplicate_copies) : "?",
      o.exactly_once ? "must be 0" : "information: at-least-once may repeat");
  row("log: stale copies", log ? group(log->stale_copies) : "?",
      o.exactly_once ? "must be 0" : "information: replays that catch up included");
  if (!o.exactly_once) {
    row("log: stale copies left behind", log ? group(behind) : "?",
        fmt::format("must be 0 ({} more after a relay stall or a database outage)",
                    group(behind_expired)));
  }
  row("log: distinct ids", log ? group(log->distinct_ids) : "?",
      log ? fmt::format("{} records read in {:.1f} s", group(log->records), t.audit_s)
          : t.audit_error);
  row("outbox left", group(v.outbox_left));
  row("inbox dead letters", group(v.inbox_dead),
      fmt::format("{} poison injected, {} unexpected", v.poison, v.inbox_dead_unexpected));
  row("outbox dead letters", group(v.outbox_dead),
      fmt::format("{} oversize injected, {} unexpected", v.oversize, v.outbox_dead_unexpected));
  row("unexpected process exits", group(static_cast<std::int64_t>(t.unexpected_exits.size())));
  row("writer errors recovered", group(ws.errors.load()),
      fmt::format("{} transactions committed", group(ws.transactions.load())));
  row("wall time", fmt::format("{:.1f} s", wall_s),
      fmt::format("servers {:.1f} s, writing {:.1f} s, drain {:.1f} s", t.servers_s, t.write_s,
                  t.drain_s));
  for (const auto& e : t.unexpected_exits) std::cout << "  exit: " << e << "\n";
  for (const auto& e : t.unclean_stops) std::cout << "  stop: " << e << "\n";
  for (const auto& d : v.details) std::cout << d << "\n";
  if (log) {
    for (const auto& d : log->details) std::cout << d << "\n";
  }
  if (!behind_examples.empty()) {
    std::cout << "stale copies left behind, first " << behind_examples.size() << ":\n";
    for (const auto& e : behind_examples) std::cout << e << "\n";
  }
  std::cout << (log ? log_line(*log) : "log: not audited: " + t.audit_error)
            << (o.exactly_once ? "" : " [at_least_once: information]") << "\n";
  const std::string replay =
      fmt::format("txbox_chaos --seed {} --messages {} --faults {} --write-seconds {}", o.work.seed,
                  o.work.messages, o.faults, o.work.write_seconds) +
      (o.brokers == 3 ? " --brokers 3" : "") + (o.pg_failover ? " --pg-failover" : "") +
      (o.exactly_once ? " --exactly-once" : "");
  if (violations.empty()) {
    std::cout << fmt::format("PASS (seed {}; replay: {})\n", o.work.seed, replay);
    return 0;
  }
  std::cout << fmt::format("FAIL (seed {}): {}\n  replay the schedule: {}\n  logs: {}\n",
                           o.work.seed, fmt::join(violations, "; "), replay, t.logs);
  return 1;
}

}  // namespace chaos
