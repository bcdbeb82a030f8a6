// The relay benchmark's txbox measurements: relay drains.
#include "relay_bench_txbox.hpp"

#include <fmt/format.h>

#include <cstring>
#include <span>
#include <thread>
#include <vector>

#include "relay_bench_process.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace bench {

using namespace std::chrono_literals;
using namespace txbox::detail;

// A consumer of all `partitions` partitions of `topic` from their beginning: counts what
// reached Kafka.
kafka_ptr make_counter(const std::string& topic, int partitions) {
  auto c = make_client(RD_KAFKA_CONSUMER, {{"group.id", "count-" + topic},
                                           {"enable.auto.commit", "false"},
                                           {"enable.partition.eof", "false"},
                                           {"isolation.level", "read_committed"}});
  rd_kafka_poll_set_consumer(c.get());
  partition_list_ptr parts(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(c.get(), parts.get());
  return c;
}

bool is_warm_up(const rd_kafka_message_t& m) {
  return m.len >= 7 && std::memcmp(m.payload, "warm-up", 7) == 0;
}

// Counts messages (other than warm-ups) until `n` or `until`; returns the count.
long count_until(rd_kafka_t* c, long n, clk::time_point until) {
  long got = 0;
  while (got < n && clk::now() < until) {
    message_ptr m(rd_kafka_consumer_poll(c, 100));
    if (!m || m->err || is_warm_up(*m)) continue;
    ++got;
  }
  return got;
}

// Every relay producer learns the topic before the timed drain: librdkafka (2.0) holds a
// producer's first message to a topic it does not know yet until its next 1 s topic scan, up
// to 1 s of the drain that is start-up, not throughput. One row per key, so on every shard and
// (exactly_once) through every lane's producer, goes through the relays; waits for all of them
// in Kafka (`counter` reads them, and the topic's own warm-up message).
void warm_up_relays(pqxx::connection& c, rd_kafka_t* counter, const std::string& topic) {
  enqueue_one_per_key(c, topic, "warm-up relay");
  long got = 0;
  for (const auto until = clk::now() + 60s; got < k_keys && clk::now() < until;) {
    message_ptr m(rd_kafka_consumer_poll(counter, 100));
    if (m && !m->err && m->len == 13 && std::memcmp(m->payload, "warm-up relay", 13) == 0) ++got;
  }
  if (got < k_keys) {
    progress(
        fmt::format("  warning: {} of {} warm-up rows reached Kafka within 60 s", got, k_keys));
  }
}

// Waits until `relays` live relays share the 64 shards.
void await_leases(pqxx::connection& c, int relays) {
  const auto until = clk::now() + 60s;
  while (clk::now() < until) {
    const auto r = pq::exec1(pqxx::nontransaction(c),
                             "SELECT count(*), count(DISTINCT owner) FROM txbox.outbox_leases "
                             "WHERE owner IS NOT NULL AND expires_at > now()");
    if (r[0].as<int>() == 64 && r[1].as<int>() == relays) return;
    std::this_thread::sleep_for(50ms);
  }
  progress(fmt::format("  warning: {} relays did not share the 64 shards within 60 s", relays));
}

DrainRun relay_drain(pqxx::connection& c, const std::string& topic, long backlog, long measure,
                     int relays, Delivery delivery, int partitions) {
  reset_schema(c);
  create_topic(topic, partitions);
  auto counter = make_counter(topic, partitions);
  std::vector<Child> kids;
  std::vector<int> ports;  // exactly_once: /metrics of each relay, for its transactions
  for (int i = 0; i < relays; ++i) {
    ports.push_back(delivery == Delivery::exactly_once ? free_port() : 0);
    kids.push_back(start_relay(fmt::format("r{}", i), Wakeup::probe, delivery, ports.back()));
  }
  await_leases(c, relays);
  warm_up_relays(c, counter.get(), topic);
  fill_sql(c, topic, backlog, true);
  const auto t0 = clk::now();  // the backlog committed: the relays' NOTIFY fires now
  // The relays' CPU from here: their idle ticks during a long fill are not per-message cost.
  double cpu0 = 0;
  for (auto k : kids) cpu0 += cpu_seconds(k.pid);
  const CpuSplit split0 = cpu_split();
  const long first = 0;
  const long last = count_until(counter.get(), measure, clk::now() + 300s);
  const double s = seconds_since(t0);
  double cpu1 = 0;
  for (auto k : kids) cpu1 += cpu_seconds(k.pid);
  DrainRun r;
  r.cpu = cpu_split() - split0;
  const double done = static_cast<double>(last - first);
  rd_kafka_consumer_close(counter.get());
  r.msgs = done;
  r.rate = done / s;
  r.us_per_msg = s * 1e6 / done;
  r.cpu_us_per_msg = (cpu1 - cpu0) * 1e6 / done;
  r.rss_kib = rss_kib(kids[0].pid);
  if (delivery == Delivery::exactly_once) {
    r.transactions = r.aborted = r.commit_s = 0;
    for (const int port : ports) {
      const double committed = metric_sum(port, "txbox_relay_transactions_committed_total");
      const double aborted = metric_sum(port, "txbox_relay_transactions_aborted_total");
      const double commit_s = metric_sum(port, "txbox_relay_transaction_commit_seconds_sum");
      if (committed < 0 || aborted < 0 || commit_s < 0) {
        r.transactions = r.aborted = r.commit_s = -1;
        progress(fmt::format("  warning: no /metrics from the relay on port {}", port));
        break;
      }
      r.transactions += committed, r.aborted += aborted, r.commit_s += commit_s;
    }
  }
  for (auto k : kids) stop(k);
  return r;
}

}  // namespace bench
