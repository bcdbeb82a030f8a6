// The relay benchmark's end-to-end runs: commit -> inbox handler, paced or unpaced.
#include "relay_bench_e2e.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "relay_bench_txbox.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"

namespace bench {

using namespace std::chrono_literals;

namespace {

// Commit and handler times of message i ("i:<i>;" payloads) go to shared memory between the
// bench and the consumer's child process (CLOCK_MONOTONIC is system-wide).
struct Shared {
  std::atomic<long> handled{0};
  std::atomic<int> ready{0};
  std::atomic<int> stop{0};
  long rss_kib = 0;
  std::int64_t handler_ns[1];  // really `capacity` entries
};

[[noreturn]] void consumer_child(Shared* sh, std::size_t capacity, const std::string& topic,
                                 const std::string& name) {
  // The inbox logs to stdout: not into the bench's table.
  (void)std::freopen(("/tmp/bench-" + name + ".log").c_str(), "w", stdout);
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

// One relay and one inbox consumer (a child process) on a fresh topic and an empty outbox,
// warmed up end to end, ready for up to `capacity` messages; stopped by finish().
class Pipeline {
 public:
  Pipeline(pqxx::connection& c, const std::string& topic, Wakeup wakeup, std::size_t capacity,
           int run, Delivery delivery)
      : m_capacity(capacity), m_commit_ns(capacity, 0) {
    reset_schema(c);
    create_topic(topic);
    m_bytes = sizeof(Shared) + capacity * sizeof(std::int64_t);
    void* p = ::mmap(nullptr, m_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    m_sh = new (p) Shared();
    m_child = ::fork();
    if (m_child == 0) {
      consumer_child(m_sh, capacity, topic, fmt::format("e2e-{}-{}", ::getppid(), run));
    }
    m_port = delivery == Delivery::exactly_once ? free_port() : 0;
    install_notify_trigger(c, wakeup == Wakeup::notify);
    m_relay = start_relay("e2e", wakeup, delivery, m_port);
    await_leases(c, 1);
    warm_up(c, topic);
    // The measured window's transactions only.
    if (m_port > 0) {
      m_txn0 = metric_sum(m_port, "txbox_relay_transactions_committed_total");
      m_commit0 = metric_sum(m_port, "txbox_relay_transaction_commit_seconds_sum");
    }
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline() {
    if (m_relay.pid > 0) finish();
    ::munmap(m_sh, m_bytes);
  }

  long handled() const { return m_sh->handled; }
  std::size_t capacity() const { return m_capacity; }

  // Message i (< capacity) enqueued in its own transaction on `wc`, its commit time kept.
  void write(pqxx::connection& wc, const txbox::Outbox& ob, const std::string& topic,
             std::size_t i) {
    std::string payload = fmt::format("i:{};", i);
    payload.resize(k_payload.size(), 'p');
    pqxx::work tx(wc);
    ob.enqueue(tx, {.topic = topic,
                    .key = key_of(static_cast<long>(i)),
                    .payload = payload,
                    .type = "OrderPlaced"});
    tx.commit();
    m_commit_ns[i] = now_ns();
  }

  // Waits up to `wait` for `sent` messages at the handler, then stops the relay and the
  // consumer: r's RSS, transactions, handled count and latencies of messages 0..sent-1.
  void finish(E2eRun& r, long sent, clk::duration wait) {
    const auto deadline = clk::now() + wait;
    while (m_sh->handled < sent && clk::now() < deadline) std::this_thread::sleep_for(20ms);
    r.sent = sent;
    r.handled = m_sh->handled;
    r.relay_rss = rss_kib(m_relay.pid);
    if (m_port > 0) {
      r.transactions = metric_sum(m_port, "txbox_relay_transactions_committed_total") - m_txn0;
      r.commit_s = metric_sum(m_port, "txbox_relay_transaction_commit_seconds_sum") - m_commit0;
    }
    finish();
    r.consumer_rss = m_sh->rss_kib;
    std::vector<double> lat;
    for (std::size_t i = 0; i < static_cast<std::size_t>(sent); ++i) {
      if (m_sh->handler_ns[i] && m_commit_ns[i]) {
        lat.push_back(static_cast<double>(m_sh->handler_ns[i] - m_commit_ns[i]) / 1e9);
      }
    }
    r.lat = percentiles(lat);
  }

 private:
  // Warm-up through the whole pipeline: outbox -> relay -> Kafka -> inbox handler, on every
  // key, so on every shard: in exactly_once each lane's producer has its own metadata and
  // first transaction to get behind it (1-2 s, measured).
  void warm_up(pqxx::connection& c, const std::string& topic) {
    enqueue_one_per_key(c, topic, "warm-up");
    const auto ready_by = clk::now() + 60s;
    while (m_sh->ready < 1 + k_keys && clk::now() < ready_by) std::this_thread::sleep_for(20ms);
    std::this_thread::sleep_for(500ms);
  }

  void finish() {
    stop(m_relay);
    m_relay.pid = 0;
    m_sh->stop = 1;
    ::waitpid(m_child, nullptr, 0);
  }

  std::size_t m_capacity;
  std::vector<std::int64_t> m_commit_ns;
  std::size_t m_bytes = 0;
  Shared* m_sh = nullptr;
  pid_t m_child = 0;
  int m_port = 0;
  Child m_relay{0};
  double m_txn0 = 0, m_commit0 = 0;
};

// k_clients writer connections feeding a Pipeline, one message per transaction.
class Writers {
 public:
  Writers(Pipeline& p, std::string topic) : m_p(p), m_topic(std::move(topic)) {
    for (int w = 0; w < k_clients; ++w) m_conns.push_back(std::make_unique<pqxx::connection>(g_pg));
  }

  // Messages [from, from + n) at `rate` msg/s; returns the msg/s reached.
  double paced(std::size_t from, std::size_t n, double rate) {
    const auto t0 = clk::now();
    run([&](int w, pqxx::connection& wc) {
      for (std::size_t i = static_cast<std::size_t>(w); i < n; i += k_clients) {
        std::this_thread::sleep_until(
            t0 + std::chrono::nanoseconds(static_cast<long>(1e9 * static_cast<double>(i) / rate)));
        m_p.write(wc, m_ob, m_topic, from + i);
      }
    });
    return static_cast<double>(n) / seconds_since(t0);
  }

  // Messages from `from` on as fast as the writers go, for `seconds` (at most up to the
  // pipeline's capacity); `at(written)` is called `skip` s in and at the end. Returns the next
  // free index and the count written (a writer stopped may leave an index unused).
  std::pair<std::size_t, std::size_t> unpaced(std::size_t from, double seconds, double skip,
                                              const std::function<void(std::size_t)>& at) {
    std::atomic<std::size_t> next{from};
    std::atomic<std::size_t> written{0};
    std::atomic<bool> go{true};
    std::thread clock([&] {
      std::this_thread::sleep_for(std::chrono::duration<double>(skip));
      at(written);
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds - skip));
      at(written);
      go = false;
    });
    run([&](int, pqxx::connection& wc) {
      for (std::size_t i = next++; go && i < m_p.capacity(); i = next++) {
        m_p.write(wc, m_ob, m_topic, i);
        ++written;
      }
    });
    clock.join();
    return {next, written};
  }

 private:
  void run(const std::function<void(int, pqxx::connection&)>& body) {
    std::vector<std::thread> ts;
    for (int w = 0; w < k_clients; ++w) ts.emplace_back([&, w] { body(w, *m_conns[w]); });
    for (auto& t : ts) t.join();
  }

  Pipeline& m_p;
  std::string m_topic;
  const txbox::Outbox m_ob;
  std::vector<std::unique_ptr<pqxx::connection>> m_conns;
};

// Waits up to `wait` for `n` messages at the handler; whether they arrived.
bool await_handled(const Pipeline& p, long n, clk::duration wait) {
  const auto deadline = clk::now() + wait;
  while (p.handled() < n && clk::now() < deadline) std::this_thread::sleep_for(10ms);
  return p.handled() >= n;
}

}  // namespace

E2eRun end_to_end(pqxx::connection& c, const std::string& topic, Wakeup wakeup, double rate,
                  double seconds, int run, Delivery delivery) {
  const auto n = static_cast<std::size_t>(rate * seconds);
  Pipeline p(c, topic, wakeup, n, run, delivery);
  Writers writers(p, topic);
  E2eRun r;
  r.offered = rate;
  r.achieved = writers.paced(0, n, rate);
  p.finish(r, static_cast<long>(n), 30s);
  if (r.lat.n < n) {
    progress(fmt::format("  only {} of {} messages reached the handler", r.lat.n, n));
  }
  return r;
}

E2eCapacity e2e_capacity(pqxx::connection& c, const std::string& topic, int run) {
  // Room for far more than the machine writes (2 clients, one message per transaction).
  const auto cap = static_cast<std::size_t>(40'000 * (E2eCapacity::k_unpaced_s + 10));
  Pipeline p(c, topic, Wakeup::probe, cap, run, Delivery::at_least_once);
  Writers writers(p, topic);
  E2eCapacity out;
  // Unpaced: the rates from k_skip s in to the end.
  constexpr double k_skip = 2;
  std::size_t written[2] = {0, 0};
  long handled[2] = {0, 0};
  clk::time_point at[2];
  int k = 0;
  auto [next, total] = writers.unpaced(0, E2eCapacity::k_unpaced_s, k_skip, [&](std::size_t w) {
    written[k] = w, handled[k] = p.handled(), at[k] = clk::now();
    ++k;
  });
  const double window = std::chrono::duration<double>(at[1] - at[0]).count();
  out.unpaced_writers = static_cast<double>(written[1] - written[0]) / window;
  out.unpaced_handler = static_cast<double>(handled[1] - handled[0]) / window;
  const double upper = std::min(out.unpaced_writers, out.unpaced_handler);
  await_handled(p, static_cast<long>(total), 20s);
  // The ramp: paced steps up to the unpaced rate; the highest one sustained is the capacity.
  for (const double f : E2eCapacity::k_ramp) {
    RampStep s;
    s.offered = f * upper;
    const auto n = static_cast<std::size_t>(s.offered * E2eCapacity::k_step_s);
    if (next + n > cap) break;
    s.achieved = writers.paced(next, n, s.offered);
    next += n, total += n;
    s.caught_up = await_handled(p, static_cast<long>(total), 1s);
    out.steps.push_back(s);
    progress(fmt::format("  ramp {:.0f} msg/s: writers {:.0f}, {}", s.offered, s.achieved,
                         s.caught_up ? "caught up" : "**behind** after 1 s"));
    if (!s.sustained()) break;
    out.capacity = s.offered;
  }
  // Not even the first step held: what its writers reached, below it.
  if (out.capacity == 0 && !out.steps.empty()) out.capacity = 0.9 * out.steps.front().achieved;
  E2eRun r;
  p.finish(r, static_cast<long>(next), 20s);
  out.relay_rss = r.relay_rss, out.consumer_rss = r.consumer_rss;
  return out;
}

}  // namespace bench
