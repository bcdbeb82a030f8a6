// The relay benchmark table's rows of latency at load (against the end-to-end capacity) and of
// cost vs backlog (with the big backlog's sizes and vacuum activity).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "relay_bench_table.hpp"

namespace bench {
namespace {

const char* verdict(bool ok) {
  return ok ? "**met**" : "**missed**";
}

// "(N msg/s offered, M achieved)", flagged when the machine did not keep up.
std::string rates(const E2eRun& r) {
  std::string s = fmt::format("{:.0f} msg/s offered, {:.0f} achieved", r.offered, r.achieved);
  if (r.handled < r.sent) s += fmt::format(", {} of {} handled", r.handled, r.sent);
  if (r.overloaded()) s += ", **overloaded**";
  return s;
}

double target_ms(const Figures& f) {
  return LatencyFigures::k_target_raw * f.lat.raw.p99 + f.commit_ms;
}

// exactly_once's commit→handler latency against at_least_once's at the same offered rate.
void print_eos_latency(const Figures& f) {
  for (const auto& [load, r] : f.lat.eos) {
    const auto same = std::find_if(f.lat.probe.begin(), f.lat.probe.end(),
                                   [&](const auto& e) { return e.first == load; });
    if (same == f.lat.probe.end()) continue;
    const auto& alo = same->second.lat;
    // The relay's transactions in the run: their rate and commit time.
    const std::string txns =
        r.transactions > 0
            ? fmt::format("; {:.0f} transactions, {:.1f} msg each, mean commit {:.1f} ms",
                          r.transactions, static_cast<double>(r.lat.n) / r.transactions,
                          1000 * r.commit_s / r.transactions)
            : "";
    std::printf(
        "| commit→handler p50 / p99 / p99.9, %.0f%% of capacity (%s), probe, exactly_once | "
        "%.1f / %.1f / %.1f ms | p50 %.2f×, p99 %.2f× at_least_once%s | |\n",
        load * 100, rates(r).c_str(), r.lat.p50, r.lat.p99, r.lat.p999, r.lat.p50 / alo.p50,
        r.lat.p99 / alo.p99, txns.c_str());
  }
}

std::string sizes(const TableSample& s) {
  return fmt::format("{:.0f} + {:.0f}", s.table_mib, s.index_mib);
}

void print_big_backlog(const Figures& f) {
  const auto& b = f.big;
  std::printf(
      "| big backlog fill: %ld messages via enqueue, %d writers × %d msgs/tx, no relay, "
      "autovacuum %s | %.0f msg/s (offered %.0f), %.0f s | | |\n",
      b.n, k_fill_writers, k_fill_rows, b.autovacuum.c_str(), b.big.fill_rate, b.rate,
      b.big.fill_s);
  std::printf(
      "| relay cost per message at %ld pending, enqueued in one transaction for an idle relay "
      "(all drained, %d runs) | "
      "%.1f µs wall, %.1f µs relay CPU | | |\n",
      k_base_backlog, k_base_reps, b.base.us_per_msg, b.base.cpu_us_per_msg);
  const double ratio = b.big.drain.us_per_msg / b.base.us_per_msg;
  std::printf(
      "| relay cost per message at %ld pending (paced fill, then one relay started: all drained in "
      "%.0f s, %.0f msg/s, the first message read back after %.1f s) | "
      "%.1f µs wall, %.1f µs relay CPU | %.2f× %ld (CPU %.2f×) | ≤ %.1f× %s |\n",
      b.n, b.big.drain_s, b.big.drain.rate, b.big.drain.first_s, b.big.drain.us_per_msg,
      b.big.drain.cpu_us_per_msg, ratio, k_base_backlog,
      b.big.drain.cpu_us_per_msg / b.base.cpu_us_per_msg, BigBacklog::k_target,
      verdict(ratio <= BigBacklog::k_target));
  if (b.samples.size() < 2) return;
  // Mid-drain: the sample closest to half the messages pending, after the fill.
  std::size_t mid = b.filled;
  for (std::size_t i = b.filled; i < b.drained; ++i) {
    if (std::labs(b.samples[i].pending - b.n / 2) < std::labs(b.samples[mid].pending - b.n / 2)) {
      mid = i;
    }
  }
  std::string after =
      fmt::format("{} / {} / {} / {}", sizes(b.samples.front()), sizes(b.samples[b.filled]),
                  sizes(b.samples[mid]), sizes(b.samples[b.drained]));
  if (b.vacuumed > 0) after += " / " + sizes(b.samples[b.vacuumed]);
  std::printf(
      "| outbox table + indexes, MiB: before / filled / mid-drain (%ld pending) / drained%s | %s "
      "| | |\n",
      b.samples[mid].pending,
      b.vacuumed > 0
          ? fmt::format(" / {:.0f} s later", b.samples[b.vacuumed].t_s - b.samples[b.drained].t_s)
                .c_str()
          : "",
      after.c_str());
  const auto vacuum_row = [&](const char* when, const TableStats& s) {
    std::printf(
        "| outbox %s %ld messages: n_dead_tup, n_tup_del, autovacuums (autoanalyzes), last "
        "autovacuum | %ld, %ld, %ld (%ld), %s | | |\n",
        when, b.n, s.dead, s.deleted - b.before.deleted, s.autovacuums - b.before.autovacuums,
        s.autoanalyzes - b.before.autoanalyzes,
        s.last_autovacuum.empty() ? "never" : s.last_autovacuum.c_str());
  };
  vacuum_row("right after", b.after);
  if (b.vacuumed > 0) vacuum_row("(then up to 90 s for an autovacuum) after", b.vacuumed_stats);
}

}  // namespace

void print_raw_latency_row(const Figures& f) {
  std::printf(
      "| raw produce→consume p50 / p99 at %.0f msg/s (50%% of capacity) | %.1f / %.1f ms "
      "| | |\n",
      f.lat.raw_rate, f.lat.raw.p50, f.lat.raw.p99);
}

void print_latency_rows(const Figures& f) {
  const auto& c = f.lat.capacity;
  std::string ramp;
  for (const auto& s : c.steps) {
    ramp += fmt::format("{}{:.0f}→{:.0f}{}", ramp.empty() ? "" : ", ", s.offered, s.achieved,
                        s.sustained() ? "" : " (not sustained)");
  }
  std::printf(
      "| end-to-end capacity: %d writers (1 msg/tx), relay ×1 (probe), broker, inbox consumer; "
      "the highest paced step sustained | %.0f msg/s | unpaced: writers %.0f, handler %.0f msg/s; "
      "steps offered→achieved: %s | |\n",
      k_clients, c.capacity, c.unpaced_writers, c.unpaced_handler, ramp.c_str());
  for (std::size_t i = 0; i < f.lat.probe.size() && i < f.lat.notify.size(); ++i) {
    for (const auto* set : {&f.lat.probe, &f.lat.notify}) {
      const auto& [load, r] = (*set)[i];
      const bool notify = set == &f.lat.notify;
      std::string target = load == LatencyFigures::k_target_load
                               ? fmt::format("≤ {:.0f}× raw p99 + 1 commit = {:.1f} ms {}",
                                             LatencyFigures::k_target_raw, target_ms(f),
                                             verdict(r.lat.p99 <= target_ms(f)))
                               : "";
      if (!notify && load <= LatencyFigures::k_target_load) {
        const double limit = f.lat.notify[i].second.lat.p99 + LatencyFigures::k_notify_margin_ms;
        target +=
            fmt::format("{}p99 ≤ NOTIFY's + {:.0f} ms = {:.1f} ms {}", target.empty() ? "" : "; ",
                        LatencyFigures::k_notify_margin_ms, limit, verdict(r.lat.p99 <= limit));
      }
      std::printf(
          "| commit→handler p50 / p99 / p99.9, %.0f%% of capacity (%s), %s | %.1f / %.1f / %.1f "
          "ms | p99 %.1f× raw p99 | %s |\n",
          load * 100, rates(r).c_str(), wakeup_name(notify ? Wakeup::notify : Wakeup::probe),
          r.lat.p50, r.lat.p99, r.lat.p999, r.lat.p99 / f.lat.raw.p99, target.c_str());
    }
  }
  print_eos_latency(f);
}

void print_latency_table(const Figures& f) {
  std::printf("\n| measure (PostgreSQL %s, %d writers, 1 msg/tx) | value | ratio | target |\n",
              f.durability.c_str(), k_clients);
  std::printf("|---|---:|---:|---|\n");
  print_raw_latency_row(f);
  print_latency_rows(f);
}

void print_backlog_rows(const Figures& f) {
  const double base = f.cost.empty() ? 0 : f.cost.front().second.us_per_msg;
  for (const auto& [b, r] : f.cost) {
    std::printf(
        "| relay cost per message at %ld pending (SQL fill, first %ld drained) | %.1f µs wall, "
        "%.1f µs relay CPU | %.2f× %ld | |\n",
        b, std::min(b, 100'000L), r.us_per_msg, r.cpu_us_per_msg, r.us_per_msg / base,
        f.cost.front().first);
  }
  if (f.big.n > 0 && f.big.big.drain.us_per_msg > 0) print_big_backlog(f);
}

}  // namespace bench
