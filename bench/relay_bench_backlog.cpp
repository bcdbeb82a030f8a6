// The relay benchmark's big backlog: a paced fill through enqueue, then one relay's drain.
#include "relay_bench_backlog.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <span>
#include <thread>
#include <vector>

#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace bench {

using namespace std::chrono_literals;
using namespace txbox::detail;

namespace {

constexpr auto k_tick = 10s;  // progress and a size sample this often
const char* const k_outbox = "txbox.outbox";

TableStats table_stats(pqxx::connection& c) {
  const auto r = pq::exec1(
      pqxx::nontransaction(c),
      "SELECT n_live_tup, n_dead_tup, n_tup_ins, n_tup_del, autovacuum_count, vacuum_count, "
      "autoanalyze_count, coalesce(last_autovacuum::text, '') FROM pg_stat_user_tables "
      "WHERE relid = $1::regclass",
      k_outbox);
  TableStats s;
  s.live = r[0].as<long>(), s.dead = r[1].as<long>(), s.inserted = r[2].as<long>();
  s.deleted = r[3].as<long>(), s.autovacuums = r[4].as<long>(), s.vacuums = r[5].as<long>();
  s.autoanalyzes = r[6].as<long>(), s.last_autovacuum = r[7].as<std::string>();
  return s;
}

// The outbox's sizes and dead rows now.
TableSample sample(pqxx::connection& c, clk::time_point t0, long pending) {
  const auto r = pq::exec1(pqxx::nontransaction(c),
                           "SELECT pg_relation_size($1::regclass), pg_indexes_size($1::regclass), "
                           "pg_total_relation_size($1::regclass)",
                           k_outbox);
  const auto st = table_stats(c);
  constexpr double mib = 1024.0 * 1024.0;
  return {.t_s = seconds_since(t0),
          .pending = pending,
          .table_mib = r[0].as<double>() / mib,
          .index_mib = r[1].as<double>() / mib,
          .total_mib = r[2].as<double>() / mib,
          .dead = st.dead,
          .autovacuums = st.autovacuums};
}

std::string describe(const TableSample& s) {
  return fmt::format("table {:.0f} MiB, indexes {:.0f} MiB, {} dead rows, {} autovacuums",
                     s.table_mib, s.index_mib, s.dead, s.autovacuums);
}

// `n` messages through enqueue from k_fill_writers connections, k_fill_rows per transaction,
// paced to `rate` msg/s; `tick(written)` every k_tick. Returns the achieved msg/s.
double paced_fill(const std::string& topic, long n, double rate,
                  const std::function<void(long)>& tick) {
  const long txs = (n + k_fill_rows - 1) / k_fill_rows;
  std::atomic<long> written{0};
  std::atomic<int> running{k_fill_writers};
  const auto t0 = clk::now();
  std::vector<std::thread> writers;
  for (int w = 0; w < k_fill_writers; ++w) {
    writers.emplace_back([&, w] {
      pqxx::connection wc(g_pg);
      const txbox::Outbox ob;
      std::vector<txbox::Message> batch;
      for (long j = w; j < txs; j += k_fill_writers) {
        const long from = j * k_fill_rows, to = std::min(n, from + k_fill_rows);
        batch.clear();
        for (long i = from; i < to; ++i) {
          batch.push_back(
              {.topic = topic, .key = key_of(i), .payload = k_payload, .type = "OrderPlaced"});
        }
        std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(static_cast<long>(
                                               1e9 * static_cast<double>(from) / rate)));
        pqxx::work tx(wc);
        ob.enqueue(tx, std::span<const txbox::Message>(batch));
        tx.commit();
        written += to - from;
      }
      --running;
    });
  }
  for (auto next = clk::now() + k_tick; running > 0; std::this_thread::sleep_for(100ms)) {
    if (clk::now() < next) continue;
    tick(written);
    next += k_tick;
  }
  for (auto& w : writers) w.join();
  return static_cast<double>(n) / seconds_since(t0);
}

// Counts `relay`'s messages back from Kafka until `n` (`tick(pending)` every k_tick), then
// awaits its /metrics counting them all acknowledged and removed from the outbox; wall and
// relay CPU per message from `t0` and `cpu0`. Stops the relay.
DrainRun await_drain(rd_kafka_t* counter, Child relay, int port, long n, clk::time_point t0,
                     double cpu0, const std::function<void(long)>& tick, long published0 = 0) {
  long got = 0;
  auto last = clk::now(), first = last;
  // No message for this long: give up (the first may take a while on a big backlog).
  const auto stalled = [&] { return clk::now() - last > (got == 0 ? 600s : 120s); };
  for (auto next = clk::now() + k_tick; got < n && !stalled();) {
    if (clk::now() >= next) {
      tick(n - got);
      next += k_tick;
    }
    message_ptr m(rd_kafka_consumer_poll(counter, 100));
    if (!m || m->err) continue;
    if (m->len == 7 && std::memcmp(m->payload, "warm-up", 7) == 0) continue;
    if (got++ == 0) first = clk::now();
    last = clk::now();
  }
  // All read back: the last deletes follow within milliseconds (polled only now, so that
  // /metrics costs the relay no CPU during the drain).
  const auto deadline = clk::now() + 60s;
  while (metric_sum(port, "txbox_relay_published_total") < static_cast<double>(published0 + got) &&
         clk::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  const double s = seconds_since(t0);
  DrainRun r;
  r.first_s = std::chrono::duration<double>(first - t0).count();
  const double cpu = cpu_seconds(relay.pid) - cpu0;
  r.rss_kib = rss_kib(relay.pid);
  stop(relay);  // its backend exits: its table statistics are flushed
  rd_kafka_consumer_close(counter);
  if (got < n) progress(fmt::format("  warning: only {} of {} messages read back", got, n));
  const double msgs = static_cast<double>(std::max(1L, got));
  r.rate = msgs / s;
  r.us_per_msg = s * 1e6 / msgs;
  r.cpu_us_per_msg = cpu * 1e6 / msgs;
  return r;
}

// The baseline: `n` messages enqueued (k_fill_rows per call) in one transaction while one
// relay idles with all the shards, warmed up on the topic (as relay_drain does, but through
// enqueue), timed from the commit (its NOTIFY wakes the relay) until all are read back and
// removed.
DrainRun small_drain(pqxx::connection& c, const std::string& topic, long n) {
  reset_schema(c);
  create_topic(topic);
  auto counter = make_counter(topic);
  const int port = free_port();
  const Child relay = start_relay("backlog-base", Wakeup::probe, Delivery::at_least_once, port);
  await_leases(c, 1);
  const txbox::Outbox ob;
  {  // warm-up: the relay's producer learns the topic (a first produce waits ~0.5 s for it)
    pqxx::work tx(c);
    ob.enqueue(tx, {.topic = topic, .key = key_of(0), .payload = "warm-up"});
    tx.commit();
    const auto until = clk::now() + 30s;
    while (metric_sum(port, "txbox_relay_published_total") < 1 && clk::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
  }
  pqxx::work tx(c);
  std::vector<txbox::Message> batch;
  for (long from = 0; from < n; from += k_fill_rows) {
    batch.clear();
    for (long i = from; i < std::min(n, from + k_fill_rows); ++i) {
      batch.push_back(
          {.topic = topic, .key = key_of(i), .payload = k_payload, .type = "OrderPlaced"});
    }
    ob.enqueue(tx, std::span<const txbox::Message>(batch));
  }
  tx.commit();
  const auto t0 = clk::now();
  return await_drain(
      counter.get(), relay, port, n, t0, cpu_seconds(relay.pid), [](long) {}, 1);
}

// Fill `n` messages at `rate` with no relay running, then one relay started on them drains
// them all, timed from its start; `tick(phase, pending)` every k_tick and after the fill.
PacedDrain fill_and_drain(const std::string& topic, long n, double rate,
                          const std::function<void(const char*, long)>& tick) {
  create_topic(topic);
  PacedDrain p;
  auto t = clk::now();
  p.fill_rate = paced_fill(topic, n, rate, [&](long written) { tick("fill", written); });
  p.fill_s = seconds_since(t);
  tick("filled", n);
  auto counter = make_counter(topic);
  const int port = free_port();
  t = clk::now();
  const Child relay = start_relay("backlog", Wakeup::probe, Delivery::at_least_once, port);
  p.drain = await_drain(counter.get(), relay, port, n, t, 0,
                        [&](long pending) { tick("drain", pending); });
  p.drain_s = seconds_since(t);
  return p;
}

}  // namespace

BigBacklog big_backlog(pqxx::connection& c, const std::string& topic, long n, double rate) {
  BigBacklog b;
  b.n = n;
  b.rate = rate;
  b.autovacuum = pq::exec1(pqxx::nontransaction(c), "SHOW autovacuum")[0].as<std::string>();
  if (b.autovacuum != "on") progress("  warning: autovacuum is " + b.autovacuum);

  progress(
      fmt::format("  baseline: {} messages enqueued in one transaction for an idle "
                  "relay, drained {} times",
                  k_base_backlog, k_base_reps));
  for (int rep = 0; rep < k_base_reps; ++rep) {
    const auto r = small_drain(c, fmt::format("{}_base{}", topic, rep), k_base_backlog);
    b.base.rate += r.rate / k_base_reps;
    b.base.us_per_msg += r.us_per_msg / k_base_reps;
    b.base.cpu_us_per_msg += r.cpu_us_per_msg / k_base_reps;
    b.base.rss_kib = std::max(b.base.rss_kib, r.rss_kib);
  }
  progress(fmt::format("  baseline: {:.1f} µs wall, {:.1f} µs relay CPU per message",
                       b.base.us_per_msg, b.base.cpu_us_per_msg));

  reset_schema(c);  // the big run's table starts empty: its "before" sample
  const auto t0 = clk::now();
  b.before = table_stats(c);
  b.samples.push_back(sample(c, t0, 0));
  progress("  before: " + describe(b.samples.back()));
  // Pending: while filling, every message written (no relay runs); then those not read back.
  const auto tick = [&](const char* phase, long pending) {
    b.samples.push_back(sample(c, t0, pending));
    if (std::strcmp(phase, "filled") == 0) b.filled = b.samples.size() - 1;
    progress(fmt::format("  {}: {} pending of {} ({:.0f} s); {}", phase, pending, n,
                         b.samples.back().t_s, describe(b.samples.back())));
  };
  b.big = fill_and_drain(topic, n, rate, tick);
  b.samples.push_back(sample(c, t0, 0));
  b.drained = b.samples.size() - 1;
  b.after = table_stats(c);
  progress(
      fmt::format("  drained in {:.1f} s (the first message {:.2f} s after the relay's "
                  "start): {:.1f} µs wall, {:.1f} µs relay CPU per message; {}",
                  b.big.drain_s, b.big.drain.first_s, b.big.drain.us_per_msg,
                  b.big.drain.cpu_us_per_msg, describe(b.samples.back())));
  // A big run: up to 90 s more for an autovacuum of the emptied table (autovacuum_naptime is
  // 60 s), sampled; what it leaves is the vacuumed sample.
  if (n < k_await_vacuum) return b;
  const auto until = clk::now() + 90s;
  while (clk::now() < until && table_stats(c).autovacuums == b.after.autovacuums) {
    std::this_thread::sleep_for(1s);
    if (clk::now() - t0 - std::chrono::duration<double>(b.samples.back().t_s) >= k_tick) {
      tick("after", 0);
    }
  }
  b.samples.push_back(sample(c, t0, 0));
  b.vacuumed = b.samples.size() - 1;
  b.vacuumed_stats = table_stats(c);
  progress("  after the drain: " + describe(b.samples.back()));
  return b;
}

}  // namespace bench
