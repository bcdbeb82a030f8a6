// Relay benchmark: the machine's limits and txbox-relay measured in one run on one broker
// and one database. Prints a markdown table. Run through bench/run.sh.
//   relay_bench PG_CONNINFO KAFKA_BOOTSTRAP RELAY_BINARY [MESSAGES]
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "txbox/detail/rdkafka.hpp"
#include "txbox/outbox.hpp"

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace txbox::detail;

std::string g_pg, g_kafka, g_relay;
const std::string k_payload(200, 'p');  // an order-event-sized payload

double seconds_since(clk::time_point t) {
  return std::chrono::duration<double>(clk::now() - t).count();
}

void progress(const std::string& what) {
  std::fprintf(stderr, "[bench] %s\n", what.c_str());
}

kafka_ptr make_producer() {
  conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  for (auto [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", g_kafka},
                                                        {"acks", "all"},
                                                        {"enable.idempotence", "true"},
                                                        {"linger.ms", "5"}}) {
    rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err);
  }
  kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();
  return rk;
}

void reset_schema(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  n.exec(
      "DELETE FROM txbox.outbox; DELETE FROM txbox.outbox_dead; "
      "UPDATE txbox.outbox_leases SET owner = NULL, expires_at = '-infinity'; "
      "DELETE FROM txbox.outbox_relays");
  n.exec("VACUUM ANALYZE txbox.outbox");
}

void fill(pqxx::connection& c, const std::string& topic, int n) {
  const txbox::Outbox ob;
  for (int i = 0; i < n; i += 1000) {
    std::vector<txbox::Message> batch;
    for (int j = i; j < std::min(n, i + 1000); ++j) {
      batch.push_back({.topic = topic,
                       .key = "key-" + std::to_string(j % 1000),
                       .payload = k_payload,
                       .type = "OrderPlaced"});
    }
    pqxx::work tx(c);
    ob.enqueue(tx, batch);
    tx.commit();
  }
  pqxx::nontransaction(c).exec("VACUUM ANALYZE txbox.outbox");
}

long pending(pqxx::connection& c) {
  return pqxx::nontransaction(c).exec1("SELECT count(*) FROM txbox.outbox")[0].as<long>();
}

double raw_produce(const std::string& topic, int n) {
  auto rk = make_producer();
  rd_kafka_poll(rk.get(), 2000);  // producer id
  const auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    const std::string key = "key-" + std::to_string(i % 1000);
    headers_ptr h(rd_kafka_headers_new(5));
    for (const char* name : {"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time"}) {
      rd_kafka_header_add(h.get(), name, -1, "0192f0c3-6b1e-7a3c-8d2e-0f1a2b3c4d5e", 36);
    }
    while (rd_kafka_producev(
               rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
               RD_KAFKA_V_VALUE(const_cast<char*>(k_payload.data()), k_payload.size()),
               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h.get()),
               RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk.get(), 5);
    }
    h.release();
    rd_kafka_poll(rk.get(), 0);
  }
  rd_kafka_flush(rk.get(), 60000);
  return n / seconds_since(t0);
}

// Claim (SELECT a shard's head, 500 rows) + DELETE by id, round-robin over the 64 shards.
double raw_drain(pqxx::connection& c, int n) {
  const auto t0 = clk::now();
  long done = 0;
  while (done < n) {
    for (int shard = 0; shard < 64; ++shard) {
      pqxx::work tx(c);
      const auto r = tx.exec_params(
          "SELECT id, message_id, topic, key, payload, headers FROM txbox.outbox WHERE shard = $1 "
          "AND published_at IS NULL ORDER BY id LIMIT 500",
          shard);
      if (r.empty()) continue;
      std::string ids = "{";
      for (const auto& row : r) ids += (ids.size() > 1 ? "," : "") + row[0].as<std::string>();
      tx.exec_params("DELETE FROM txbox.outbox WHERE id = ANY($1::bigint[])", ids + "}");
      tx.commit();
      done += static_cast<long>(r.size());
    }
  }
  return static_cast<double>(n) / seconds_since(t0);
}

struct Child {
  pid_t pid;
};

Child start_relay(const std::string& name, bool notify) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen(("/tmp/bench-" + name + ".log").c_str(), "w", stderr);
    std::vector<const char*> argv = {
        g_relay.c_str(), "--database-url", g_pg.c_str(), "--kafka-bootstrap-servers",
        g_kafka.c_str(), "--name",         name.c_str()};
    if (!notify) argv.push_back("--no-notify");
    argv.push_back(nullptr);
    ::execv(argv[0], const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  return {pid};
}

void stop(Child c) {
  ::kill(c.pid, SIGTERM);
  ::waitpid(c.pid, nullptr, 0);
}

long rss_kib(pid_t pid) {
  FILE* f = std::fopen(fmt::format("/proc/{}/status", pid).c_str(), "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

// Drain rate of `relays` relays over a full outbox of `n` rows, timed from the first
// published row to the last (start-up and lease acquisition excluded).
double relay_rate(pqxx::connection& c, const std::string& topic, int n, int relays,
                  long* rss = nullptr) {
  reset_schema(c);
  fill(c, topic, n);
  std::vector<Child> kids;
  for (int i = 0; i < relays; ++i) kids.push_back(start_relay(fmt::format("r{}", i), true));
  while (pending(c) >= n) std::this_thread::sleep_for(5ms);
  const long start_left = pending(c);
  const auto t0 = clk::now();
  while (pending(c) > 0) std::this_thread::sleep_for(20ms);
  const double rate = static_cast<double>(start_left) / seconds_since(t0);
  if (rss) *rss = rss_kib(kids[0].pid);
  for (auto k : kids) stop(k);
  return rate;
}

// Commit -> consumer latency at a fixed rate, with one relay.
std::pair<double, double> latency(pqxx::connection& c, const std::string& topic, bool notify,
                                  int rate, int seconds) {
  reset_schema(c);
  auto relay = start_relay("lat", notify);
  // Consumer on the topic's end.
  conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", g_kafka.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "group.id", ("lat-" + topic).c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "auto.offset.reset", "latest", err, sizeof err);
  rd_kafka_conf_set(conf.get(), "fetch.wait.max.ms", "10", err, sizeof err);
  kafka_ptr consumer(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  conf.release();
  rd_kafka_poll_set_consumer(consumer.get());
  partition_list_ptr subs(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(subs.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer.get(), subs.get());
  for (int i = 0; i < 50; ++i) rd_kafka_consumer_poll(consumer.get(), 100);  // join the group
  std::this_thread::sleep_for(3s);

  std::map<std::string, clk::time_point> committed;
  std::mutex mu;
  std::vector<double> lat;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    pqxx::connection wc(g_pg);
    const txbox::Outbox ob;
    const auto t0 = clk::now();
    for (int i = 0; i < rate * seconds; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(1'000'000L * i / rate));
      pqxx::work tx(wc);
      const auto id = ob.enqueue(
          tx, {.topic = topic, .key = "k" + std::to_string(i % 100), .payload = k_payload});
      tx.commit();
      std::lock_guard l(mu);
      committed[id.str()] = clk::now();
    }
    writing = false;
  });
  const auto deadline = clk::now() + std::chrono::seconds(seconds + 30);
  while ((writing || lat.size() < committed.size()) && clk::now() < deadline) {
    message_ptr m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!m || m->err) continue;
    const auto now = clk::now();
    rd_kafka_headers_t* h = nullptr;
    const void* v = nullptr;
    size_t len = 0;
    if (rd_kafka_message_headers(m.get(), &h) || rd_kafka_header_get_last(h, "ce_id", &v, &len)) {
      continue;
    }
    std::lock_guard l(mu);
    const auto it = committed.find(std::string(static_cast<const char*>(v), len));
    if (it != committed.end())
      lat.push_back(std::chrono::duration<double>(now - it->second).count());
  }
  writer.join();
  rd_kafka_consumer_close(consumer.get());
  stop(relay);
  std::sort(lat.begin(), lat.end());
  if (lat.empty()) return {-1, -1};
  return {lat[lat.size() / 2] * 1000, lat[std::min(lat.size() - 1, lat.size() * 99 / 100)] * 1000};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: relay_bench PG KAFKA RELAY_BINARY [MESSAGES]\n");
    return 2;
  }
  g_pg = argv[1];
  g_kafka = argv[2];
  g_relay = argv[3];
  const int n = argc > 4 ? std::atoi(argv[4]) : 100'000;
  pqxx::connection c(g_pg);
  const std::string topic = fmt::format("bench_{}", ::getpid());

  progress("raw librdkafka produce (acks=all, idempotent)");
  raw_produce(topic, 2000);  // creates the topic, warms up
  const double produce = raw_produce(topic, n);
  progress("raw claim + delete drain");
  reset_schema(c);
  fill(c, topic, n);
  const double drain = raw_drain(c, n);
  progress("txbox-relay x1");
  long rss = 0;
  const double r1 = relay_rate(c, topic, n, 1, &rss);
  progress("txbox-relay x2");
  const double r2 = relay_rate(c, topic, n, 2);
  progress("commit -> consume latency at 500 msg/s, NOTIFY on");
  const auto [p50n, p99n] = latency(c, topic, true, 500, 10);
  progress("commit -> consume latency at 500 msg/s, poll only (500 ms)");
  const auto [p50p, p99p] = latency(c, topic, false, 500, 10);

  const double limit = std::min(produce, drain);
  std::printf("\n| measure (%d messages of %zu bytes, 1000 keys) | value | ratio |\n", n,
              k_payload.size());
  std::printf("|---|---:|---:|\n");
  std::printf("| raw librdkafka produce, acks=all, idempotent | %.0f msg/s | |\n", produce);
  std::printf("| raw claim+delete drain (500-row batches) | %.0f rows/s | |\n", drain);
  std::printf("| txbox-relay, 1 relay | %.0f msg/s | %.2fx min(raw) |\n", r1, r1 / limit);
  std::printf("| txbox-relay, 2 relays | %.0f msg/s | %.2fx min(raw) |\n", r2, r2 / limit);
  std::printf("| commit->consume p50 / p99 at 500 msg/s, NOTIFY | %.1f / %.1f ms | |\n", p50n,
              p99n);
  std::printf("| commit->consume p50 / p99 at 500 msg/s, poll 500 ms | %.1f / %.1f ms | |\n", p50p,
              p99p);
  std::printf("| relay peak RSS (1 relay, drain) | %.1f MiB | |\n",
              static_cast<double>(rss) / 1024);
  return 0;
}
