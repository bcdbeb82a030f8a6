// The phantom guard's latency cost: commit -> consumer latency of txbox-relay without and with
// --wait-for-standbys 1, at a fraction (default 10 %) of the relay's drain rate, on a primary
// with one streaming standby. Run through bench/standby_gate.sh. Prints a markdown table.
//   standby_gate_bench PG KAFKA RELAY_BINARY [--seconds S] [--load F] [--drain N]
#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_metrics.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

extern char** environ;

namespace {

using namespace std::chrono_literals;
using bench::metric_sum;
using steady = std::chrono::steady_clock;

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A txbox-relay process; SIGTERM and reaped when destroyed.
class RelayProcess {
 public:
  explicit RelayProcess(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&m_pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start " + args[0]);
    }
  }
  ~RelayProcess() {
    ::kill(m_pid, SIGTERM);
    int st = 0;
    ::waitpid(m_pid, &st, 0);
  }
  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

 private:
  pid_t m_pid = -1;
};

long pending(pqxx::connection& db) {
  return pq::exec1(pqxx::nontransaction(db), "SELECT count(*) FROM txbox.outbox")[0].as<long>();
}

void wait_drained(pqxx::connection& db) {
  while (pending(db) > 0) std::this_thread::sleep_for(20ms);
}

// Reads `topic` from its start; records receive-time minus the commit time in the payload.
class LatencyReader {
 public:
  LatencyReader(const std::string& kafka, const std::string& topic) {
    char err[512];
    txbox::detail::conf_ptr conf(rd_kafka_conf_new());
    for (const auto& [k, v] :
         std::vector<std::pair<std::string, std::string>>{{"bootstrap.servers", kafka},
                                                          {"group.id", topic},
                                                          {"auto.offset.reset", "earliest"},
                                                          {"enable.auto.commit", "false"},
                                                          {"fetch.wait.max.ms", "5"},
                                                          {"fetch.min.bytes", "1"}}) {
      rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err);
    }
    m_rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
    if (!m_rk) throw std::runtime_error(err);
    (void)conf.release();  // rd_kafka_new took the conf on success
    rd_kafka_poll_set_consumer(m_rk.get());
    txbox::detail::partition_list_ptr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(m_rk.get(), list.get());
    m_thread = std::thread([this] {
      while (!m_stop) {
        txbox::detail::message_ptr m(rd_kafka_consumer_poll(m_rk.get(), 50));
        if (!m || m->err) continue;
        const std::string v(static_cast<const char*>(m->payload), m->len);
        if (v.starts_with("w")) {  // a warm-up record
          m_warm = true;
          continue;
        }
        m_us.push_back(static_cast<double>(now_us() - std::stoll(v)));
        ++m_count;
      }
    });
  }
  ~LatencyReader() {
    m_stop = true;
    if (m_thread.joinable()) m_thread.join();
    rd_kafka_consumer_close(m_rk.get());
  }
  LatencyReader(const LatencyReader&) = delete;
  LatencyReader& operator=(const LatencyReader&) = delete;
  /// Waits until `n` records arrived (up to 60 s); returns the latencies in ms, sorted.
  std::vector<double> take(std::size_t n) {
    const auto until = steady::now() + 60s;
    while (m_count.load() < n && steady::now() < until) std::this_thread::sleep_for(20ms);
    m_stop = true;
    m_thread.join();  // m_us is ours from here on
    std::vector<double> ms;
    for (double us : m_us) ms.push_back(us / 1000);
    std::sort(ms.begin(), ms.end());
    return ms;
  }

 private:
  txbox::detail::kafka_ptr m_rk;
  std::atomic<bool> m_stop{false};
  std::atomic<std::size_t> m_count{0};

 public:
  std::atomic<bool> m_warm{false};  ///< a warm-up record arrived

 private:
  std::vector<double> m_us;
  std::thread m_thread;
};

double pct(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: standby_gate_bench PG KAFKA RELAY_BINARY [--seconds S] [--load F] "
                 "[--drain N]\n");
    return 2;
  }
  const std::string pg = argv[1], kafka = argv[2], relay = argv[3];
  double seconds = 15, load = 0.1;
  int drain = 20'000;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--load") load = std::stod(argv[i + 1]);
    if (a == "--drain") drain = std::stoi(argv[i + 1]);
  }
  pqxx::connection db(pg);
  const txbox::Outbox ob;
  const int http_port = 20000 + ::getpid() % 20000;
  const auto relay_args = [&](const std::string& name, bool guard) {
    std::vector<std::string> a = {relay,
                                  "--database-url",
                                  pg,
                                  "--kafka-bootstrap-servers",
                                  kafka,
                                  "--name",
                                  name,
                                  "--log-level",
                                  "warn",
                                  "--http-listen",
                                  fmt::format("127.0.0.1:{}", http_port)};
    if (guard) a.insert(a.end(), {"--wait-for-standbys", "1"});
    return a;
  };

  // The drain rate without the guard: a backlog of `drain` rows.
  const std::string drain_topic = fmt::format("gate_drain_{}", ::getpid());
  for (int i = 0; i < drain; i += 100) {
    pqxx::work tx(db);
    std::vector<txbox::Message> batch(100, txbox::Message{.topic = drain_topic, .payload = "0"});
    ob.enqueue(tx, batch);
    tx.commit();
  }
  double max_rate = 0;
  {
    const auto t0 = steady::now();
    RelayProcess r(relay_args("gate-drain", false));
    wait_drained(db);
    max_rate = drain / std::chrono::duration<double>(steady::now() - t0).count();
  }
  const double rate = std::max(10.0, load * max_rate);
  std::fprintf(stderr, "drain rate %.0f msg/s; measuring at %.0f msg/s for %.0f s each\n", max_rate,
               rate, seconds);

  std::string gate_note;
  std::printf("| relay | rate (msg/s) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const bool guard : {false, true}) {
    const std::string topic = fmt::format("gate_{}_{}", guard ? "on" : "off", ::getpid());
    RelayProcess r(relay_args(fmt::format("gate-{}", guard ? "on" : "off"), guard));
    LatencyReader reader(kafka, topic);
    // Warm-up: the relay takes its shards, the topic is created, the reader is assigned.
    while (!reader.m_warm) {
      pqxx::work tx(db);
      ob.enqueue(tx, txbox::Message{.topic = topic, .payload = "w"});
      tx.commit();
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(1s);
    const int n = static_cast<int>(rate * seconds);
    const auto t0 = steady::now();
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_until(
          t0 + std::chrono::microseconds(static_cast<std::int64_t>(i * 1e6 / rate)));
      pqxx::work tx(db);
      ob.enqueue(tx, txbox::Message{.topic = topic, .payload = std::to_string(now_us())});
      tx.commit();
    }
    const auto ms = reader.take(static_cast<std::size_t>(n));
    if (guard) {
      // The gate's own time: what the rounds spent waiting for the standby, per message.
      const double wait = metric_sum(http_port, "txbox_relay_standby_wait_seconds_total");
      const double published = metric_sum(http_port, "txbox_relay_published_total");
      gate_note = fmt::format(
          "The gate waited {:.3f} ms per message on average ({:.3f} s for {:.0f} messages, "
          "warm-up included).",
          published > 0 ? wait * 1000 / published : 0, wait, published);
    }
    std::printf("| %s | %.0f | %.2f | %.2f | %.2f | %.2f |\n",
                guard ? "--wait-for-standbys 1" : "no guard", rate, pct(ms, 0.5), pct(ms, 0.9),
                pct(ms, 0.99), ms.empty() ? 0 : ms.back());
    std::fflush(stdout);
  }
  std::printf("\n%s\n", gate_note.c_str());
  return 0;
}
