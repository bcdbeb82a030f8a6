// Relay benchmark: the machine's limits and txbox measured in one run on one broker and one
// database, with the ratios and issue 7's and 17's targets; both delivery modes, exactly_once's
// throughput and latency against at_least_once's (issue 15's target). The limit a relay drain
// is compared with is min(Kafka's ProducerPerformance at the topic's partitions, the raw claim +
// delete drain); the headline drains write to topics of k_partitions (6) partitions, relay x1
// and x2 also to 1 partition. Prints a markdown table (stdout) and progress (stderr); writes
// every figure as "name<TAB>value" lines to --out for the plots. Run through bench/run.sh.
//   relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs 10000,1000000]
//               [--out FILE] [--peer NAME=MSGS_PER_S]... [--inbox-ratio R]
//               [--producer-perf-1p MSGS_PER_S] [--producer-perf-6p MSGS_PER_S]
//     --producer-perf-*  ProducerPerformance's rates (bench/producer_perf.sh); without them the
//                        limit falls back to the raw librdkafka produce, and the table says so
//
// This file: the command line and the phases in order. The shared helpers:
// relay_bench_support; the relay processes: relay_bench_process; the limits:
// relay_bench_limits; txbox's runs: relay_bench_txbox; the table: relay_bench_table.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <vector>

#include "relay_bench_limits.hpp"
#include "relay_bench_support.hpp"
#include "relay_bench_table.hpp"
#include "relay_bench_txbox.hpp"

namespace bench {
namespace {

// Reads PG KAFKA RELAY_BINARY (into g_pg, g_kafka, g_relay) and the options (--out opens
// g_out) into `f`; nullopt on success, else the exit code.
std::optional<int> parse_args(int argc, char** argv, Figures& f) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs A,B,...] "
                 "[--out FILE] [--peer NAME=RATE]... [--inbox-ratio R] "
                 "[--producer-perf-1p RATE] [--producer-perf-6p RATE]\n");
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
    } else if (a == "--inbox-ratio") {
      f.inbox_ratio = std::stod(v);
    } else if (a == "--producer-perf-1p") {
      f.perf_1p = std::stod(v);
    } else if (a == fmt::format("--producer-perf-{}p", k_partitions)) {
      f.perf = std::stod(v);
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
    m_f.drain = raw_drain(m_c, n);
    record("raw_drain", m_f.drain);
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

  // Latency: raw produce -> consume, then commit -> inbox handler with NOTIFY and poll-only.
  void latency() {
    // Max throughput of the pipeline under test: what 2 writers can commit and one relay drain.
    const double max_rate = std::min(m_f.enq1, m_f.relay[1].rate);
    record("e2e_max_rate", max_rate);
    const double seconds = 8;
    stage(
        fmt::format("latency at 10/50/90% of {:.0f} msg/s: raw produce->consume, then "
                    "commit->inbox handler with NOTIFY and poll-only, and at 10/50% with "
                    "NOTIFY in exactly_once ({} s each)",
                    max_rate, seconds));
    int run = 0;
    for (double f : {0.1, 0.5, 0.9}) {
      const double rate = std::max(10.0, f * max_rate);
      progress(fmt::format("  {:.0f}% = {:.0f} msg/s", f * 100, rate));
      m_f.raw_lat.push_back(
          raw_latency(fmt::format("{}_raw_{}", m_topic, run), static_cast<int>(rate), seconds));
      for (bool notify : {true, false}) {
        const auto r =
            end_to_end(m_c, fmt::format("{}_e2e_{}", m_topic, run), notify, rate, seconds, run);
        ++run;
        m_f.consumer_rss = std::max(m_f.consumer_rss, r.consumer_rss);
        m_relay_rss_e2e = std::max(m_relay_rss_e2e, r.relay_rss);
        (notify ? m_f.e2e_notify : m_f.e2e_poll).emplace_back(f, r);
        const std::string tag = fmt::format("{}_{:.0f}", notify ? "notify" : "poll", f * 100);
        record("e2e_" + tag + "_p50", r.lat.p50);
        record("e2e_" + tag + "_p99", r.lat.p99);
        record("e2e_" + tag + "_p999", r.lat.p999);
        record("e2e_" + tag + "_achieved", r.achieved);
      }
      record(fmt::format("raw_lat_{:.0f}_p50", f * 100), m_f.raw_lat.back().p50);
      record(fmt::format("raw_lat_{:.0f}_p99", f * 100), m_f.raw_lat.back().p99);
      if (f > 0.5) continue;
      // exactly_once beside it, NOTIFY only, at the same offered rate: 10% and 50% load.
      progress(fmt::format("  {:.0f}% = {:.0f} msg/s, exactly_once", f * 100, rate));
      const auto r = end_to_end(m_c, fmt::format("{}_e2e_eos_{}", m_topic, run), true, rate,
                                seconds, run, Delivery::exactly_once);
      ++run;
      m_f.e2e_eos.emplace_back(f, r);
      const std::string tag = fmt::format("eos_e2e_notify_{:.0f}", f * 100);
      record(tag + "_p50", r.lat.p50);
      record(tag + "_p99", r.lat.p99);
      record(tag + "_p999", r.lat.p999);
      record(tag + "_achieved", r.achieved);
    }
    m_step = 10;
  }

  // Cost vs backlog; then the peak RSS over every run.
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
    reset_schema(m_c);
    long relay_rss = std::max(m_relay_rss_e2e, m_f.relay[1].rss_kib);
    for (const auto& [b, r] : m_f.cost) relay_rss = std::max(relay_rss, r.rss_kib);
    m_f.relay_rss = relay_rss;
    record("relay_rss_kib", static_cast<double>(relay_rss));
    record("consumer_rss_kib", static_cast<double>(m_f.consumer_rss));
  }

 private:
  static constexpr int k_steps = 12;

  void stage(const std::string& s) { progress(fmt::format("({}/{}) {}", ++m_step, k_steps, s)); }

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
  Figures f;
  if (const auto code = parse_args(argc, argv, f)) return *code;
  for (const auto& [name, rate] : f.peers) record("peer_" + name, rate);
  if (f.perf_1p > 0) record("producer_perf_1p", f.perf_1p);
  if (f.perf > 0) record(fmt::format("producer_perf_{}p", k_partitions), f.perf);
  pqxx::connection c(g_pg);
  {
    pqxx::nontransaction q(c);
    const auto fsync = q.exec1("SHOW fsync")[0].as<std::string>();
    const auto sync = q.exec1("SHOW synchronous_commit")[0].as<std::string>();
    f.durability = fmt::format("fsync={}, synchronous_commit={}", fsync, sync);
    record("pg_fsync", fsync == "on" ? 1 : 0);
    progress("PostgreSQL " + f.durability);
  }
  Run run(f, c, fmt::format("bench_{}", ::getpid()));
  run.inserts();
  run.raw_limits();
  run.relays();
  run.latency();
  run.costs();
  print_table(f);
  if (g_out) std::fclose(g_out);
  return 0;
}
