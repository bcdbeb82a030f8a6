// The relay benchmark's txbox measurements: relay drains and end-to-end latency.
#include "relay_bench_txbox.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "relay_bench_process.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"

namespace bench {

using namespace std::chrono_literals;
using namespace txbox::detail;

namespace {

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
  {
    pqxx::work tx(c);
    std::vector<txbox::Message> warm;
    for (int k = 0; k < k_keys; ++k) {
      warm.push_back({.topic = topic, .key = key_of(k), .payload = "warm-up relay"});
    }
    txbox::Outbox().enqueue(tx, std::span<const txbox::Message>(warm));
    tx.commit();
  }
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
    const auto r = pqxx::nontransaction(c).exec1(
        "SELECT count(*), count(DISTINCT owner) FROM txbox.outbox_leases "
        "WHERE owner IS NOT NULL AND expires_at > now()");
    if (r[0].as<int>() == 64 && r[1].as<int>() == relays) return;
    std::this_thread::sleep_for(50ms);
  }
  progress(fmt::format("  warning: {} relays did not share the 64 shards within 60 s", relays));
}

// End to end: enqueue commit -> txbox::inbox handler, the consumer in a child process (its
// own RSS). Commit and handler times go to shared memory (CLOCK_MONOTONIC is system-wide).

struct Shared {
  std::atomic<long> handled{0};
  std::atomic<int> ready{0};
  std::atomic<int> stop{0};
  long rss_kib = 0;
  std::int64_t handler_ns[1];  // really `capacity` entries
};

Shared* map_shared(std::size_t capacity, std::size_t* bytes) {
  *bytes = sizeof(Shared) + capacity * sizeof(std::int64_t);
  void* p = ::mmap(nullptr, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  return new (p) Shared();
}

[[noreturn]] void consumer_child(Shared* sh, std::size_t capacity, const std::string& topic,
                                 const std::string& name) {
  try {
    txbox::ConsumerConfig cfg;
    cfg.name = name;
    cfg.topics = {topic};
    cfg.database_url = g_pg;
    cfg.kafka = {{"bootstrap.servers", g_kafka}};
    // batch_wait: the default, 0 (a batch takes what is fetched and does not wait for more).
    txbox::Consumer consumer(cfg, [&](pqxx::work&, const txbox::ReceivedMessage& m) {
      const auto t = now_ns();
      if (m.payload.rfind("i:", 0) != 0) {
        ++sh->ready;  // a warm-up message
        return;
      }
      const auto i = static_cast<std::size_t>(std::atol(m.payload.c_str() + 2));
      if (i < capacity && sh->handler_ns[i] == 0) {
        sh->handler_ns[i] = t;
        ++sh->handled;
      }
    });
    while (!sh->stop) consumer.poll_once(50ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
  }
  sh->rss_kib = rss_kib(::getpid());
  ::_exit(0);
}

}  // namespace

DrainRun relay_drain(pqxx::connection& c, const std::string& topic, long backlog, long measure,
                     int relays, Delivery delivery, int partitions) {
  reset_schema(c);
  create_topic(topic, partitions);
  auto counter = make_counter(topic, partitions);
  std::vector<Child> kids;
  std::vector<int> ports;  // exactly_once: /metrics of each relay, for its transactions
  for (int i = 0; i < relays; ++i) {
    ports.push_back(delivery == Delivery::exactly_once ? free_port() : 0);
    kids.push_back(start_relay(fmt::format("r{}", i), true, delivery, ports.back()));
  }
  await_leases(c, relays);
  warm_up_relays(c, counter.get(), topic);
  fill_sql(c, topic, backlog, true);
  const auto t0 = clk::now();  // the backlog committed: the relays' NOTIFY fires now
  // The relays' CPU from here: their idle ticks during a long fill are not per-message cost.
  double cpu0 = 0;
  for (auto k : kids) cpu0 += cpu_seconds(k.pid);
  const long first = 0;
  const long last = count_until(counter.get(), measure, clk::now() + 300s);
  const double s = seconds_since(t0);
  double cpu1 = 0;
  for (auto k : kids) cpu1 += cpu_seconds(k.pid);
  DrainRun r;
  const double done = static_cast<double>(last - first);
  rd_kafka_consumer_close(counter.get());
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

E2eRun end_to_end(pqxx::connection& c, const std::string& topic, bool notify, double rate,
                  double seconds, int run, Delivery delivery) {
  reset_schema(c);
  create_topic(topic);
  const auto n = static_cast<std::size_t>(rate * seconds);
  std::size_t bytes = 0;
  Shared* sh = map_shared(n, &bytes);
  const pid_t child = ::fork();
  if (child == 0) consumer_child(sh, n, topic, fmt::format("e2e-{}-{}", ::getppid(), run));
  const int port = delivery == Delivery::exactly_once ? free_port() : 0;
  auto relay = start_relay("e2e", notify, delivery, port);
  await_leases(c, 1);
  {  // warm-up through the whole pipeline: outbox -> relay -> Kafka -> inbox handler, on
     // every key, so on every shard: in exactly_once each lane's producer has its own
     // metadata and first transaction to get behind it (1-2 s, measured)
    pqxx::work tx(c);
    std::vector<txbox::Message> warm;
    for (int k = 0; k < k_keys; ++k) {
      warm.push_back({.topic = topic, .key = key_of(k), .payload = "warm-up"});
    }
    txbox::Outbox().enqueue(tx, std::span<const txbox::Message>(warm));
    tx.commit();
  }
  const auto ready_by = clk::now() + 60s;
  while (sh->ready < 1 + k_keys && clk::now() < ready_by) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(500ms);
  // The measured window's transactions only.
  const double txn0 = port > 0 ? metric_sum(port, "txbox_relay_transactions_committed_total") : 0;
  const double commit0 =
      port > 0 ? metric_sum(port, "txbox_relay_transaction_commit_seconds_sum") : 0;

  std::vector<std::int64_t> commit_ns(n, 0);
  const auto t0 = clk::now();
  std::vector<std::thread> writers;
  for (int w = 0; w < k_clients; ++w) {
    writers.emplace_back([&, w] {
      pqxx::connection wc(g_pg);
      const txbox::Outbox ob;
      for (std::size_t i = static_cast<std::size_t>(w); i < n; i += k_clients) {
        std::this_thread::sleep_until(
            t0 + std::chrono::nanoseconds(static_cast<long>(1e9 * static_cast<double>(i) / rate)));
        std::string payload = fmt::format("i:{};", i);
        payload.resize(k_payload.size(), 'p');
        pqxx::work tx(wc);
        ob.enqueue(tx, {.topic = topic,
                        .key = key_of(static_cast<long>(i)),
                        .payload = payload,
                        .type = "OrderPlaced"});
        tx.commit();
        commit_ns[i] = now_ns();
      }
    });
  }
  for (auto& w : writers) w.join();
  const double write_s = seconds_since(t0);
  const auto deadline = clk::now() + 30s;
  while (sh->handled < static_cast<long>(n) && clk::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  E2eRun r;
  r.offered = rate;
  r.achieved = static_cast<double>(n) / write_s;
  r.relay_rss = rss_kib(relay.pid);
  if (port > 0) {
    r.transactions = metric_sum(port, "txbox_relay_transactions_committed_total") - txn0;
    r.commit_s = metric_sum(port, "txbox_relay_transaction_commit_seconds_sum") - commit0;
  }
  stop(relay);
  sh->stop = 1;
  ::waitpid(child, nullptr, 0);
  r.consumer_rss = sh->rss_kib;
  std::vector<double> lat;
  for (std::size_t i = 0; i < n; ++i) {
    if (sh->handler_ns[i] && commit_ns[i]) {
      lat.push_back(static_cast<double>(sh->handler_ns[i] - commit_ns[i]) / 1e9);
    }
  }
  r.lat = percentiles(lat);
  if (r.lat.n < n)
    progress(fmt::format("  only {} of {} messages reached the handler", r.lat.n, n));
  ::munmap(sh, bytes);
  return r;
}

}  // namespace bench
