// Relay benchmark: the machine's limits and txbox measured in one run on one broker and one
// database, with the ratios and issue 7's and 17's targets; both delivery modes, exactly_once's
// throughput and latency against at_least_once's (issue 15's target). The limit a relay drain
// is compared with is min(Kafka's ProducerPerformance at the topic's partitions, the raw claim +
// delete drain); the headline drains write to topics of k_partitions (6) partitions, relay x1
// and x2 also to 1 partition. Prints a markdown table (stdout) and progress (stderr); writes
// every figure as "name<TAB>value" lines to --out for the plots. Run through bench/run.sh.
//   relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs 10000,1000000]
//               [--out FILE] [--peer NAME=MSGS_PER_S]... [--inbox-ratio R] [--big N]
//               [--producer-perf-1p MSGS_PER_S] [--producer-perf-6p MSGS_PER_S]
//     --producer-perf-*  ProducerPerformance's rates (bench/producer_perf.sh); without them the
//                        limit falls back to the raw librdkafka produce, and the table says so
//     --big N  also N messages written through enqueue at a paced rate with no relay running,
//              then drained by one relay (relay_bench_backlog), e.g. 10,000,000 (run.sh --10m)
//
// This file: the command line and the phases in order. The shared helpers:
// relay_bench_support; the relay processes: relay_bench_process; the limits:
// relay_bench_limits; txbox's drains: relay_bench_txbox; end to end: relay_bench_e2e; the big
// backlog: relay_bench_backlog; the table: relay_bench_table(_load).
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <vector>

#include "relay_bench_backlog.hpp"
#include "relay_bench_e2e.hpp"
#include "relay_bench_limits.hpp"
#include "relay_bench_support.hpp"
#include "relay_bench_table.hpp"
#include "relay_bench_txbox.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace bench {
namespace {

// Reads PG KAFKA RELAY_BINARY (into g_pg, g_kafka, g_relay) and the options (--out opens
// g_out) into `f`; nullopt on success, else the exit code.
std::optional<int> parse_args(int argc, char** argv, Figures& f) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs A,B,...] "
                 "[--out FILE] [--peer NAME=RATE]... [--inbox-ratio R] [--big N] "
                 "[--producer-perf-1p RATE] [--producer-perf-6p RATE] [--only latency]\n");
    return 2;
  }
  g_pg = argv[1];
  g_kafka = argv[2];
  g_relay = argv[3];
  f.n = 100'000;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--messages") {
      f.n = std::stoi(v);
    } else if (a == "--backlogs") {
      f.backlogs.clear();
      std::stringstream ss(v);
      for (std::string x; std::getline(ss, x, ',');) f.backlogs.push_back(std::stol(x));
    } else if (a == "--out") {
      g_out = std::fopen(v.c_str(), "w");
    } else if (a == "--peer") {
      const auto eq = v.find('=');
      f.peers.emplace_back(v.substr(0, eq), std::stod(v.substr(eq + 1)));
    } else if (a == "--big") {
      f.big.n = std::stol(v);
    } else if (a == "--inbox-ratio") {
      f.inbox_ratio = std::stod(v);
    } else if (a == "--producer-perf-1p") {
      f.perf_1p = std::stod(v);
    } else if (a == fmt::format("--producer-perf-{}p", k_partitions)) {
      f.perf = std::stod(v);
    } else if (a == "--only" && v == "latency") {
      f.only_latency = true;
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  return std::nullopt;
}

// The phases of a run, in order, each recording its figures (--out) and keeping them in `f`.
class Run {
 public:
  Run(Figures& f, pqxx::connection& c, std::string topic)
      : m_f(f), m_c(c), m_topic(std::move(topic)) {}

  // Limits and enqueue: INSERT.
  void inserts() {
    stage("INSERT tx/s: bare INSERT vs enqueue, 1 and 100 rows per tx, 2 clients, 2 rounds");
    double bare1 = 0, enq1 = 0, bare100 = 0, enq100 = 0;
    for (int round = 0; round < 2; ++round) {  // interleaved, so drift hits both alike
      reset_schema(m_c);
      bare1 += insert_rate(m_topic, 1, false, 4);
      enq1 += insert_rate(m_topic, 1, true, 4);
      reset_schema(m_c);
      bare100 += insert_rate(m_topic, 100, false, 4) / 100;
      enq100 += insert_rate(m_topic, 100, true, 4) / 100;
    }
    bare1 /= 2, enq1 /= 2, bare100 /= 2, enq100 /= 2;
    m_f.bare1 = bare1, m_f.enq1 = enq1, m_f.bare100 = bare100, m_f.enq100 = enq100;
    m_f.commit_ms = one_commit_ms(m_topic);
    record("bare_insert_1_tps", bare1);
    record("enqueue_1_tps", enq1);
    record("bare_insert_100_tps", bare100);
    record("enqueue_100_tps", enq100);
    record("one_commit_ms", m_f.commit_ms);
  }

  // Limits: Kafka, and the raw outbox drain. The limit at P partitions: min(ProducerPerformance
  // at P partitions, or else the raw librdkafka produce, and the drain).
  void raw_limits() {
    const int n = m_f.n;
    stage(
        fmt::format("raw librdkafka produce of {} msgs (acks=all, idempotent, batched), {} "
                    "partitions, then 1 partition",
                    n, k_partitions));
    const std::string topic_1p = m_topic + "_1p";
    create_topic(m_topic, k_partitions);
    create_topic(topic_1p, 1);
    raw_produce(m_topic, 2000);  // warms up
    m_f.produce = raw_produce(m_topic, n);
    record("raw_produce", m_f.produce);
    raw_produce(topic_1p, 2000);
    m_f.produce_1p = raw_produce(topic_1p, n);
    record("raw_produce_1p", m_f.produce_1p);
    stage(fmt::format("raw consume, {} partitions", k_partitions));
    m_f.consume = raw_consume(m_topic, n);
    record("raw_consume", m_f.consume);

    stage(fmt::format("raw claim + delete drain of {} rows", n));
    reset_schema(m_c);
    fill_sql(m_c, m_topic, n);
    const CpuSplit before = cpu_split();
    m_f.drain = raw_drain(m_c, n);
    m_f.drain_cpu = cpu_split() - before;
    record("raw_drain", m_f.drain);
    record("raw_drain_pg_us", m_f.drain_cpu.postgres * 1e6 / n);
    m_f.limit = std::min(m_f.perf > 0 ? m_f.perf : m_f.produce, m_f.drain);
    m_f.limit_1p = std::min(m_f.perf_1p > 0 ? m_f.perf_1p : m_f.produce_1p, m_f.drain);
    record("limit", m_f.limit);
    record("limit_1p", m_f.limit_1p);
  }

  // Relay throughput: at_least_once x1, x2, x4 at k_partitions (x1 and x2 then at 1
  // partition), then exactly_once x1, x2 at k_partitions.
  void relays() {
    const auto alo = Delivery::at_least_once;
    for (int k : {1, 2, 4}) {
      stage(fmt::format("txbox-relay x{} draining {} rows, {} partitions{}", k, m_f.n, k_partitions,
                        k <= 2 ? ", then 1 partition" : ""));
      const auto& r = m_f.relay[k] =
          relay_drain(m_c, fmt::format("{}_x{}", m_topic, k), m_f.n, m_f.n, k, alo, k_partitions);
      record(fmt::format("relay_x{}", k), r.rate);
      record(fmt::format("relay_x{}_ratio", k), r.rate / m_f.limit);
      record(fmt::format("relay_x{}_cpu_us", k), r.cpu_us_per_msg);
      record(fmt::format("relay_x{}_pg_us", k), r.cpu.postgres * 1e6 / r.msgs);
      record(fmt::format("relay_x{}_broker_us", k), r.cpu.broker * 1e6 / r.msgs);
      record(fmt::format("relay_x{}_busy", k), r.cpu.busy / r.cpu.total);
      if (k > 2) continue;
      const auto& r1 = m_f.relay_1p[k] =
          relay_drain(m_c, fmt::format("{}_1p_x{}", m_topic, k), m_f.n, m_f.n, k, alo, 1);
      record(fmt::format("relay_1p_x{}", k), r1.rate);
      record(fmt::format("relay_1p_x{}_ratio", k), r1.rate / m_f.limit_1p);
      record(fmt::format("relay_1p_x{}_cpu_us", k), r1.cpu_us_per_msg);
    }
    for (int k : {1, 2}) {
      stage(fmt::format("txbox-relay x{} --exactly-once draining {} rows, {} partitions", k, m_f.n,
                        k_partitions));
      const auto r = relay_drain(m_c, fmt::format("{}_eos_x{}", m_topic, k), m_f.n, m_f.n, k,
                                 Delivery::exactly_once, k_partitions);
      m_f.relay_eos[k] = r;
      record(fmt::format("relay_eos_x{}", k), r.rate);
      record(fmt::format("relay_eos_x{}_ratio", k), r.rate / m_f.relay[k].rate);
      record(fmt::format("relay_eos_x{}_transactions", k), r.transactions);
      record(fmt::format("relay_eos_x{}_commit_s", k), r.commit_s);
    }
    m_step = 9;
  }

  // Latency: the end-to-end capacity (writers, relay, broker and inbox consumer together), then
  // commit -> inbox handler at 10/50/80% of it woken by the probe and by V5's NOTIFY trigger,
  // exactly_once at 10/50% with the probe, and raw produce -> consume at the 50% rate.
  void latency() {
    const double seconds = 8;
    auto& l = m_f.lat;
    stage(fmt::format(
        "latency: end-to-end capacity ({} writers, relay, inbox consumer: {:.0f} s unpaced, then "
        "paced steps), then commit->inbox handler at 10/50/80% of it woken by the probe (V6) and "
        "by V5's NOTIFY trigger, and at 10/50% with the probe in exactly_once ({} s each)",
        k_clients, E2eCapacity::k_unpaced_s, seconds));
    int run = 0;
    l.capacity = e2e_capacity(m_c, fmt::format("{}_e2e_cap", m_topic), run++);
    const auto& cap = l.capacity;
    progress(fmt::format("  capacity {:.0f} msg/s (unpaced: writers {:.0f}, handler {:.0f})",
                         cap.capacity, cap.unpaced_writers, cap.unpaced_handler));
    record("e2e_capacity", cap.capacity);
    record("e2e_capacity_unpaced_writers", cap.unpaced_writers);
    record("e2e_capacity_unpaced_handler", cap.unpaced_handler);
    for (std::size_t i = 0; i < cap.steps.size(); ++i) {
      record(fmt::format("e2e_ramp{}_offered", i), cap.steps[i].offered);
      record(fmt::format("e2e_ramp{}_achieved", i), cap.steps[i].achieved);
      record(fmt::format("e2e_ramp{}_sustained", i), cap.steps[i].sustained() ? 1 : 0);
    }
    m_relay_rss_e2e = std::max(m_relay_rss_e2e, cap.relay_rss);
    m_f.consumer_rss = std::max(m_f.consumer_rss, cap.consumer_rss);
    const auto keep = [&](const std::string& tag, const E2eRun& r) {
      m_f.consumer_rss = std::max(m_f.consumer_rss, r.consumer_rss);
      m_relay_rss_e2e = std::max(m_relay_rss_e2e, r.relay_rss);
      record(tag + "_p50", r.lat.p50);
      record(tag + "_p99", r.lat.p99);
      record(tag + "_p999", r.lat.p999);
      record(tag + "_offered", r.offered);
      record(tag + "_achieved", r.achieved);
      record(tag + "_overloaded", r.overloaded() ? 1 : 0);
    };
    for (double f : LatencyFigures::k_loads) {
      const double rate = std::max(10.0, f * cap.capacity);
      progress(fmt::format("  {:.0f}% = {:.0f} msg/s", f * 100, rate));
      if (f == LatencyFigures::k_target_load) {
        l.raw_rate = rate;
        l.raw =
            raw_latency(fmt::format("{}_raw_{}", m_topic, run), static_cast<int>(rate), seconds);
        record("raw_lat_p50", l.raw.p50);
        record("raw_lat_p99", l.raw.p99);
        record("raw_lat_rate", rate);
      }
      for (const Wakeup w : {Wakeup::probe, Wakeup::notify}) {
        const auto r =
            end_to_end(m_c, fmt::format("{}_e2e_{}", m_topic, run), w, rate, seconds, run);
        ++run;
        const bool notify = w == Wakeup::notify;
        (notify ? l.notify : l.probe).emplace_back(f, r);
        keep(fmt::format("e2e_{}_{:.0f}", notify ? "notify" : "probe", f * 100), r);
        if (r.overloaded()) {
          progress(fmt::format("  overloaded: {:.0f} of {:.0f} msg/s written, {} of {} handled",
                               r.achieved, r.offered, r.handled, r.sent));
        }
      }
      if (f > LatencyFigures::k_target_load) continue;
      // exactly_once beside it, woken by the probe, at the same offered rate: 10% and 50% load.
      progress(fmt::format("  {:.0f}% = {:.0f} msg/s, exactly_once", f * 100, rate));
      const auto r = end_to_end(m_c, fmt::format("{}_e2e_eos_{}", m_topic, run), Wakeup::probe,
                                rate, seconds, run, Delivery::exactly_once);
      ++run;
      l.eos.emplace_back(f, r);
      keep(fmt::format("eos_e2e_probe_{:.0f}", f * 100), r);
    }
    const double target = LatencyFigures::k_target_raw * l.raw.p99 + m_f.commit_ms;
    record("e2e_target_ms", target);
    const auto& at50 = l.probe[1].second;
    progress(
        fmt::format("  target: commit->handler p99 at 50% {:.1f} ms <= {:.0f}x raw p99 "
                    "{:.1f} ms + 1 commit {:.2f} ms = {:.1f} ms: {}",
                    at50.lat.p99, LatencyFigures::k_target_raw, l.raw.p99, m_f.commit_ms, target,
                    at50.lat.p99 <= target ? "met" : "missed"));
    m_step = 10;
  }

  // Cost vs backlog (SQL fills, the first 100k drained); --big N: N messages through enqueue
  // at a paced rate with no relay running, all drained by one relay, against 10k all drained
  // by one relay; then the peak RSS over every run.
  void costs() {
    for (long b : m_f.backlogs) {
      stage(fmt::format("per-message relay cost at {} pending rows", b));
      const long measure = std::min(b, 100'000L);
      DrainRun sum;
      const int reps = b <= 10'000 ? 3 : 1;  // 10k rows drain in ~0.2 s: repeat
      for (int rep = 0; rep < reps; ++rep) {
        const auto r = relay_drain(m_c, fmt::format("{}_b{}_{}", m_topic, b, rep), b, measure, 1);
        sum.us_per_msg += r.us_per_msg / reps;
        sum.cpu_us_per_msg += r.cpu_us_per_msg / reps;
        sum.rss_kib = std::max(sum.rss_kib, r.rss_kib);
      }
      m_f.cost.emplace_back(b, sum);
      record(fmt::format("cost_{}_us", b), sum.us_per_msg);
      record(fmt::format("cost_{}_cpu_us", b), sum.cpu_us_per_msg);
      record(fmt::format("cost_{}_rss_kib", b), static_cast<double>(sum.rss_kib));
    }
    if (m_f.big.n > 0) big_backlog_run();
    reset_schema(m_c);
    long relay_rss = std::max(m_relay_rss_e2e, m_f.relay[1].rss_kib);
    for (const auto& [b, r] : m_f.cost) relay_rss = std::max(relay_rss, r.rss_kib);
    relay_rss = std::max({relay_rss, m_f.big.big.drain.rss_kib, m_f.big.base.rss_kib});
    m_f.relay_rss = relay_rss;
    record("relay_rss_kib", static_cast<double>(relay_rss));
    record("consumer_rss_kib", static_cast<double>(m_f.consumer_rss));
  }

  // The big backlog: paced to half of what enqueue with 100 rows per transaction reached in
  // inserts(), at most 40k msg/s.
  void big_backlog_run() {
    const long n = m_f.big.n;
    const double rate = std::min(40'000.0, 0.5 * m_f.enq100 * 100);
    stage(fmt::format(
        "big backlog: {} messages via enqueue at {:.0f} msg/s ({} writers, {} per "
        "tx, no relay), then one relay drains them all; {} first (one transaction, idle relay)",
        n, rate, k_fill_writers, k_fill_rows, k_base_backlog));
    auto& b = m_f.big = big_backlog(m_c, fmt::format("{}_big", m_topic), n, rate);
    record("big_n", static_cast<double>(n));
    record("big_fill_offered", rate);
    record("big_fill_rate", b.big.fill_rate);
    record("big_fill_s", b.big.fill_s);
    record("big_drain_s", b.big.drain_s);
    record("big_first_s", b.big.drain.first_s);
    record("big_base_us", b.base.us_per_msg);
    record("big_base_cpu_us", b.base.cpu_us_per_msg);
    record("big_us", b.big.drain.us_per_msg);
    record("big_cpu_us", b.big.drain.cpu_us_per_msg);
    record("big_ratio", b.big.drain.us_per_msg / b.base.us_per_msg);
    record("big_rss_kib", static_cast<double>(b.big.drain.rss_kib));
    record("big_after_dead_tup", static_cast<double>(b.after.dead));
    record("big_after_tup_del", static_cast<double>(b.after.deleted - b.before.deleted));
    record("big_autovacuums", static_cast<double>(b.after.autovacuums - b.before.autovacuums));
    for (std::size_t i = 0; i < b.samples.size(); ++i) {  // the size series, for the plot
      const auto& s = b.samples[i];
      record(fmt::format("big_s{}_t", i), s.t_s);
      record(fmt::format("big_s{}_pending", i), static_cast<double>(s.pending));
      record(fmt::format("big_s{}_table_mib", i), s.table_mib);
      record(fmt::format("big_s{}_index_mib", i), s.index_mib);
      record(fmt::format("big_s{}_total_mib", i), s.total_mib);
      record(fmt::format("big_s{}_dead", i), static_cast<double>(s.dead));
    }
    record("big_filled_sample", static_cast<double>(b.filled));
    record("big_drained_sample", static_cast<double>(b.drained));
    if (b.vacuumed > 0) {
      record("big_vacuumed_sample", static_cast<double>(b.vacuumed));
      record("big_vacuumed_dead_tup", static_cast<double>(b.vacuumed_stats.dead));
      record("big_vacuumed_autovacuums",
             static_cast<double>(b.vacuumed_stats.autovacuums - b.before.autovacuums));
    }
  }

 private:
  static constexpr int k_steps = 12;

  void stage(const std::string& s) {
    progress(fmt::format("({}/{}) {}", ++m_step, k_steps + (m_f.big.n > 0 ? 1 : 0), s));
  }

  Figures& m_f;
  pqxx::connection& m_c;
  std::string m_topic;
  int m_step = 0;
  long m_relay_rss_e2e = 0;  // the relay's peak RSS in the latency runs
};

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  // The end-to-end run's consumer logs to stderr: stdout is the results' tables.
  spdlog::set_default_logger(spdlog::stderr_color_mt("relay_bench"));
  Figures f;
  if (const auto code = parse_args(argc, argv, f)) return *code;
  for (const auto& [name, rate] : f.peers) record("peer_" + name, rate);
  if (f.perf_1p > 0) record("producer_perf_1p", f.perf_1p);
  if (f.perf > 0) record(fmt::format("producer_perf_{}p", k_partitions), f.perf);
  pqxx::connection c(g_pg);
  {
    pqxx::nontransaction q(c);
    const auto fsync = pq::exec1(q, "SHOW fsync")[0].as<std::string>();
    const auto sync = pq::exec1(q, "SHOW synchronous_commit")[0].as<std::string>();
    f.durability = fmt::format("fsync={}, synchronous_commit={}", fsync, sync);
    record("pg_fsync", fsync == "on" ? 1 : 0);
    progress("PostgreSQL " + f.durability);
  }
  Run run(f, c, fmt::format("bench_{}", ::getpid()));
  if (f.only_latency) {  // bench/run.sh --latency: the wake-ups' latency alone
    run.latency();
    print_latency_table(f);
    if (g_out) std::fclose(g_out);
    return 0;
  }
  run.inserts();
  run.raw_limits();
  run.relays();
  run.latency();
  run.costs();
  print_table(f);
  if (g_out) std::fclose(g_out);
  return 0;
}
