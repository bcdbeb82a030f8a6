// Relay benchmark: the machine's limits and txbox measured in one run on one broker and one
// database, with the ratios and issue 7's targets. Prints a markdown table (stdout) and
// progress (stderr); writes every figure as "name<TAB>value" lines to --out for the plots.
// Run through bench/run.sh.
//   relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs 10000,1000000]
//               [--out FILE] [--peer NAME=MSGS_PER_S]... [--inbox-ratio R]
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "txbox/detail/rdkafka.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"
#include "txbox/uuid.hpp"

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace txbox::detail;

std::string g_pg, g_kafka, g_relay;
const std::string k_payload(200, 'p');  // an order-event-sized payload
constexpr int k_keys = 1000;
constexpr int k_clients = 2;  // writer connections (the machine has 2 cores)
FILE* g_out = nullptr;

double seconds_since(clk::time_point t) {
  return std::chrono::duration<double>(clk::now() - t).count();
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch())
      .count();
}

void progress(const std::string& what) {
  std::fprintf(stderr, "[bench %s] %s\n",
               fmt::format("{:%H:%M:%S}", fmt::localtime(std::time(nullptr))).c_str(),
               what.c_str());
}

void record(const std::string& name, double value) {
  if (g_out) {
    std::fprintf(g_out, "%s\t%.6g\n", name.c_str(), value);
    std::fflush(g_out);
  }
}

std::string key_of(long i) {
  return "key-" + std::to_string(i % k_keys);
}

struct Pct {
  double p50 = -1, p99 = -1, p999 = -1;
  std::size_t n = 0;
};

// Percentiles of samples in seconds, returned in milliseconds.
Pct percentiles(std::vector<double> v) {
  Pct p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))] *
           1000;
  };
  p.p50 = at(0.5);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  return p;
}

kafka_ptr make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& extra) {
  conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  auto all = extra;
  all["bootstrap.servers"] = g_kafka;
  for (const auto& [k, v] : all) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(err);
    }
  }
  kafka_ptr rk(rd_kafka_new(type, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  (void)conf.release();  // rd_kafka_new took the conf on success
  return rk;
}

// The relay's producer settings: acks=all, idempotent, linger.ms=5.
kafka_ptr make_producer() {
  return make_client(RD_KAFKA_PRODUCER,
                     {{"acks", "all"}, {"enable.idempotence", "true"}, {"linger.ms", "5"}});
}

kafka_ptr make_consumer(const std::string& topic, const std::string& group, bool earliest) {
  auto c =
      make_client(RD_KAFKA_CONSUMER, {{"group.id", group},
                                      {"enable.auto.commit", "false"},
                                      {"auto.offset.reset", earliest ? "earliest" : "latest"}});
  rd_kafka_poll_set_consumer(c.get());
  partition_list_ptr subs(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(subs.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(c.get(), subs.get());
  return c;
}

// Produces one message and waits for its ack: creates the topic. Returns the producer, which
// then knows the topic's leader (for end_offset).
kafka_ptr create_topic(const std::string& topic) {  // NOLINT
  auto p = make_producer();
  const std::string v = "warm-up";
  rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                    RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(p.get(), 30000);
  return p;
}

void reset_schema(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  n.exec(
      "TRUNCATE txbox.outbox; DELETE FROM txbox.outbox_dead; "
      "UPDATE txbox.outbox_leases SET owner = NULL, expires_at = '-infinity'; "
      "DELETE FROM txbox.outbox_relays");
  n.exec("VACUUM ANALYZE txbox.outbox");
}

// `n` pending rows written by SQL (fast, so that 10M rows fit in a run): the same shape as
// enqueue's rows. Rows are spread over 1000 keys and thus over the 64 shards.
// In one transaction; then VACUUM ANALYZE unless relays are already waiting for the rows.
void fill_sql(pqxx::connection& c, const std::string& topic, long n, bool relays_running = false) {
  pqxx::work tx(c);
  for (long from = 0; from < n; from += 500'000) {
    const long to = std::min(n, from + 500'000);
    tx.exec_params(
        "INSERT INTO txbox.outbox (message_id, topic, key, payload, headers) "
        "SELECT gen_random_uuid(), $1, 'key-' || (i % 1000), convert_to(repeat('p', 200), 'UTF8'), "
        "'[[\"ce_source\",\"txbox\"],[\"ce_specversion\",\"1.0\"],"
        "[\"ce_type\",\"OrderPlaced\"]]'::jsonb "
        "FROM generate_series($2::bigint, $3::bigint - 1) AS i",
        topic, from, to);
    if (n >= 1'000'000) progress(fmt::format("  filled {} / {} rows", to, n));
  }
  tx.commit();
  if (!relays_running) pqxx::nontransaction(c).exec("VACUUM ANALYZE txbox.outbox");
}

// ---------------------------------------------------------------------------------------
// Limits and enqueue: INSERT rates.

// A header array like enqueue's (ce_source, ce_specversion, ce_time, ce_type).
const std::string k_headers_json =
    R"([["ce_source","txbox"],["ce_specversion","1.0"],)"
    R"(["ce_time","2026-11-28T10:00:00.000000Z"],["ce_type","OrderPlaced"]])";

std::string bare_insert_sql(int rows) {
  std::string values;
  for (int r = 0; r < rows; ++r) {
    // Parameters grouped by column, as enqueue sends them: $1..$n ids, then topics, ...
    const int p = r + 1;
    values +=
        fmt::format("{}(${}::uuid, ${}::text, ${}::text, ${}::bytea, ${}::jsonb)",
                    r == 0 ? "" : ", ", p, p + rows, p + 2 * rows, p + 3 * rows, p + 4 * rows);
  }
  return "INSERT INTO txbox.outbox (message_id, topic, key, payload, headers) VALUES " + values;
}

// Rows per second written by `k_clients` connections for `seconds`, `rows` rows per
// transaction, either as a bare INSERT or through txbox::Outbox::enqueue.
double insert_rate(const std::string& topic, int rows, bool use_enqueue, double seconds) {
  std::atomic<long> total{0};
  std::atomic<bool> go{true};
  std::vector<std::thread> ts;
  for (int t = 0; t < k_clients; ++t) {
    ts.emplace_back([&, t] {
      pqxx::connection c(g_pg);
      const txbox::Outbox ob;
      const std::string sql = bare_insert_sql(rows);
      long i = t * 7919;
      const auto t0 = clk::now();
      while (go && seconds_since(t0) < seconds) {
        pqxx::work tx(c);
        if (use_enqueue) {
          std::vector<txbox::Message> batch;
          for (int r = 0; r < rows; ++r) {
            batch.push_back(
                {.topic = topic, .key = key_of(i++), .payload = k_payload, .type = "OrderPlaced"});
          }
          if (rows == 1) {
            ob.enqueue(tx, batch.front());
          } else {
            ob.enqueue(tx, batch);
          }
        } else {
          std::vector<std::string> ids, topics, keys, json;
          std::vector<pqxx::binarystring> payloads;
          for (int r = 0; r < rows; ++r) {
            ids.push_back(txbox::uuid_v7().str());
            topics.push_back(topic);
            keys.push_back(key_of(i++));
            payloads.emplace_back(k_payload.data(), k_payload.size());
            json.push_back(k_headers_json);
          }
          using pqxx::prepare::make_dynamic_params;
          tx.exec_params(sql, make_dynamic_params(ids), make_dynamic_params(topics),
                         make_dynamic_params(keys), make_dynamic_params(payloads),
                         make_dynamic_params(json));
        }
        tx.commit();
        total += rows;
      }
    });
  }
  const auto t0 = clk::now();
  for (auto& t : ts) t.join();
  return static_cast<double>(total) / seconds_since(t0);
}

// ---------------------------------------------------------------------------------------
// Limits: Kafka.

void add_headers(rd_kafka_headers_t* h) {
  const std::string id = txbox::uuid_v7().str();
  rd_kafka_header_add(h, "ce_id", -1, id.data(), static_cast<ssize_t>(id.size()));
  rd_kafka_header_add(h, "ce_source", -1, "txbox", 5);
  rd_kafka_header_add(h, "ce_specversion", -1, "1.0", 3);
  rd_kafka_header_add(h, "ce_time", -1, "2026-11-28T10:00:00.000000Z", 27);
  rd_kafka_header_add(h, "ce_type", -1, "OrderPlaced", 11);
}

// Raw produce as a batching client does it: hand messages over as fast as librdkafka takes
// them, serve delivery reports every 1000 messages (and when the queue is full), flush.
double raw_produce(const std::string& topic, int n) {
  auto rk = make_producer();
  rd_kafka_poll(rk.get(), 1000);
  const auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    const std::string key = key_of(i);
    headers_ptr h(rd_kafka_headers_new(5));
    add_headers(h.get());
    while (rd_kafka_producev(
               rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
               RD_KAFKA_V_VALUE(const_cast<char*>(k_payload.data()), k_payload.size()),
               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h.get()),
               RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk.get(), 10);
    }
    (void)h.release();  // rd_kafka_producev took the headers on success
    if (i % 1000 == 999) rd_kafka_poll(rk.get(), 0);
  }
  rd_kafka_flush(rk.get(), 120000);
  return n / seconds_since(t0);
}

// Raw consume of the first `n` messages of `topic`, timed from the first message.
double raw_consume(const std::string& topic, int n) {
  auto c = make_consumer(topic, "raw-consume-" + topic, true);
  int got = 0;
  clk::time_point t0{};
  const auto deadline = clk::now() + 120s;
  while (got < n && clk::now() < deadline) {
    message_ptr m(rd_kafka_consumer_poll(c.get(), 500));
    if (!m || m->err) continue;
    if (got++ == 0) t0 = clk::now();
  }
  const double s = seconds_since(t0);
  rd_kafka_consumer_close(c.get());
  return got / s;
}

// Raw produce -> consume latency at `rate` msg/s: the payload carries the send time.
Pct raw_latency(const std::string& topic, int rate, double seconds) {
  // Warm up: the producer has its id and the topic exists, the consumer is assigned.
  auto p = make_producer();
  const std::string warm = "warm-up";
  rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                    RD_KAFKA_V_VALUE(const_cast<char*>(warm.data()), warm.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(p.get(), 30000);
  auto c = make_consumer(topic, "raw-lat-" + topic, true);
  for (const auto until = clk::now() + 30s; clk::now() < until;) {
    message_ptr m(rd_kafka_consumer_poll(c.get(), 100));
    if (m && !m->err) break;
  }
  const int n = static_cast<int>(rate * seconds);
  std::vector<double> lat;
  std::atomic<bool> sending{true};
  std::thread producer([&] {
    const auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(1'000'000'000L * i / rate));
      std::string v = fmt::format("t:{};", now_ns());
      v.resize(k_payload.size(), 'p');
      const std::string key = key_of(i);
      headers_ptr h(rd_kafka_headers_new(5));
      add_headers(h.get());
      if (rd_kafka_producev(
              p.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
              RD_KAFKA_V_VALUE(v.data(), v.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
              RD_KAFKA_V_HEADERS(h.get()), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        (void)h.release();  // rd_kafka_producev took the headers on success
      }
      rd_kafka_poll(p.get(), 0);
    }
    rd_kafka_flush(p.get(), 30000);
    sending = false;
  });
  const auto deadline = clk::now() + std::chrono::duration<double>(seconds + 20);
  while ((sending || static_cast<int>(lat.size()) < n) && clk::now() < deadline) {
    message_ptr m(rd_kafka_consumer_poll(c.get(), 100));
    if (!m || m->err || m->len < 3) continue;
    const auto* v = static_cast<const char*>(m->payload);
    if (std::strncmp(v, "t:", 2) != 0) continue;
    const long long sent = std::atoll(v + 2);
    lat.push_back(static_cast<double>(now_ns() - sent) / 1e9);
  }
  producer.join();
  rd_kafka_consumer_close(c.get());
  return percentiles(lat);
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
          "AND published_at IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
          shard);
      if (r.empty()) continue;
      std::string ids = "{";
      for (const auto& row : r) {
        if (ids.size() > 1) ids += ',';
        ids += row[0].c_str();
      }
      tx.exec_params("DELETE FROM txbox.outbox WHERE id = ANY($1::bigint[])", ids + "}");
      tx.commit();
      done += static_cast<long>(r.size());
    }
  }
  return static_cast<double>(n) / seconds_since(t0);
}

// ---------------------------------------------------------------------------------------
// txbox-relay processes.

struct Child {
  pid_t pid;
};

Child start_relay(const std::string& name, bool notify) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    (void)std::freopen("/dev/null", "w", stdout);
    (void)std::freopen(("/tmp/bench-" + name + ".log").c_str(), "w", stderr);
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

// CPU seconds (user + system) used so far by `pid`.
double cpu_seconds(pid_t pid) {
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  const std::size_t len = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[len] = 0;
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  std::istringstream in(p + 2);
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::stod(field);
    if (i == 15) st = std::stod(field);
  }
  return (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct DrainRun {
  double rate = 0;            // msgs/s from the first acknowledged message
  double us_per_msg = 0;      // wall
  double cpu_us_per_msg = 0;  // relay CPU (all relays)
  long rss_kib = 0;           // peak RSS of the first relay
};

// A consumer of partition 0 of `topic` from its beginning (the bench's topics have one
// partition): counts what reached Kafka.
kafka_ptr make_counter(const std::string& topic) {
  auto c = make_client(RD_KAFKA_CONSUMER, {{"group.id", "count-" + topic},
                                           {"enable.auto.commit", "false"},
                                           {"enable.partition.eof", "false"}});
  rd_kafka_poll_set_consumer(c.get());
  partition_list_ptr parts(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c.get(), parts.get());
  return c;
}

// Counts messages (other than the warm-up) until `n` or `until`; returns the count.
long count_until(rd_kafka_t* c, long n, clk::time_point until) {
  long got = 0;
  while (got < n && clk::now() < until) {
    message_ptr m(rd_kafka_consumer_poll(c, 100));
    if (!m || m->err) continue;
    if (m->len == 7 && std::memcmp(m->payload, "warm-up", 7) == 0) continue;
    ++got;
  }
  return got;
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

// `relays` relays, started on an empty outbox and sharing its shards, drain the first
// `measure` rows of a backlog of `backlog` rows that commits in one transaction. Timed from
// that commit to the `measure`-th message read back from Kafka (start-up and fill excluded;
// wake-up, claims, produce and acks included).
DrainRun relay_drain(pqxx::connection& c, const std::string& topic, long backlog, long measure,
                     int relays) {
  reset_schema(c);
  create_topic(topic);
  auto counter = make_counter(topic);
  std::vector<Child> kids;
  for (int i = 0; i < relays; ++i) kids.push_back(start_relay(fmt::format("r{}", i), true));
  await_leases(c, relays);
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
  for (auto k : kids) stop(k);
  return r;
}

// ---------------------------------------------------------------------------------------
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

struct E2eRun {
  double offered = 0, achieved = 0;
  Pct lat;
  long relay_rss = 0, consumer_rss = 0;
};

E2eRun end_to_end(pqxx::connection& c, const std::string& topic, bool notify, double rate,
                  double seconds, int run) {
  reset_schema(c);
  create_topic(topic);
  const auto n = static_cast<std::size_t>(rate * seconds);
  std::size_t bytes = 0;
  Shared* sh = map_shared(n, &bytes);
  const pid_t child = ::fork();
  if (child == 0) consumer_child(sh, n, topic, fmt::format("e2e-{}-{}", ::getppid(), run));
  auto relay = start_relay("e2e", notify);
  await_leases(c, 1);
  {  // warm-up through the whole pipeline: outbox -> relay -> Kafka -> inbox handler
    pqxx::work tx(c);
    txbox::Outbox().enqueue(tx, {.topic = topic, .key = "warm-up", .payload = "warm-up"});
    tx.commit();
  }
  const auto ready_by = clk::now() + 60s;
  while (sh->ready < 2 && clk::now() < ready_by) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(500ms);

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

// Median time of one single-row commit (an enqueue transaction) from one client.
double one_commit_ms(const std::string& topic) {
  pqxx::connection wc(g_pg);
  const txbox::Outbox ob;
  std::vector<double> t;
  for (int i = 0; i < 500; ++i) {
    const auto t0 = clk::now();
    pqxx::work tx(wc);
    ob.enqueue(tx, {.topic = topic, .key = key_of(i), .payload = k_payload});
    tx.commit();
    t.push_back(seconds_since(t0));
  }
  return percentiles(t).p50;
}

std::string mib(long kib) {
  return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024);
}
const char* verdict(bool ok) {
  return ok ? "**met**" : "**missed**";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: relay_bench PG KAFKA RELAY_BINARY [--messages N] [--backlogs A,B,...] "
                 "[--out FILE] [--peer NAME=RATE]... [--inbox-ratio R]\n");
    return 2;
  }
  g_pg = argv[1];
  g_kafka = argv[2];
  g_relay = argv[3];
  int n = 100'000;
  std::vector<long> backlogs = {10'000, 1'000'000};
  std::vector<std::pair<std::string, double>> peers;
  double inbox_ratio = -1;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--messages") {
      n = std::stoi(v);
    } else if (a == "--backlogs") {
      backlogs.clear();
      std::stringstream ss(v);
      for (std::string x; std::getline(ss, x, ',');) backlogs.push_back(std::stol(x));
    } else if (a == "--out") {
      g_out = std::fopen(v.c_str(), "w");
    } else if (a == "--peer") {
      const auto eq = v.find('=');
      peers.emplace_back(v.substr(0, eq), std::stod(v.substr(eq + 1)));
    } else if (a == "--inbox-ratio") {
      inbox_ratio = std::stod(v);
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  for (const auto& [name, rate] : peers) record("peer_" + name, rate);
  pqxx::connection c(g_pg);
  const auto pid = ::getpid();
  const std::string topic = fmt::format("bench_{}", pid);
  const int steps = 10;
  int step = 0;
  auto stage = [&](const std::string& s) { progress(fmt::format("({}/{}) {}", ++step, steps, s)); };

  // ---- limits and enqueue: INSERT ----
  stage("INSERT tx/s: bare INSERT vs enqueue, 1 and 100 rows per tx, 2 clients, 2 rounds");
  double bare1 = 0, enq1 = 0, bare100 = 0, enq100 = 0;
  for (int round = 0; round < 2; ++round) {  // interleaved, so drift hits both alike
    reset_schema(c);
    bare1 += insert_rate(topic, 1, false, 4);
    enq1 += insert_rate(topic, 1, true, 4);
    reset_schema(c);
    bare100 += insert_rate(topic, 100, false, 4) / 100;
    enq100 += insert_rate(topic, 100, true, 4) / 100;
  }
  bare1 /= 2, enq1 /= 2, bare100 /= 2, enq100 /= 2;
  const double commit_ms = one_commit_ms(topic);
  record("bare_insert_1_tps", bare1);
  record("enqueue_1_tps", enq1);
  record("bare_insert_100_tps", bare100);
  record("enqueue_100_tps", enq100);
  record("one_commit_ms", commit_ms);

  // ---- limits: Kafka ----
  stage(fmt::format("raw librdkafka produce of {} msgs (acks=all, idempotent, batched)", n));
  raw_produce(topic, 2000);  // creates the topic, warms up
  const double produce = raw_produce(topic, n);
  record("raw_produce", produce);
  stage("raw consume");
  const double consume = raw_consume(topic, n);
  record("raw_consume", consume);

  stage(fmt::format("raw claim + delete drain of {} rows", n));
  reset_schema(c);
  fill_sql(c, topic, n);
  const double drain = raw_drain(c, n);
  record("raw_drain", drain);
  const double limit = std::min(produce, drain);

  // ---- relay throughput ----
  std::map<int, DrainRun> relay;
  for (int k : {1, 2, 4}) {
    stage(fmt::format("txbox-relay x{} draining {} rows", k, n));
    relay[k] = relay_drain(c, fmt::format("{}_x{}", topic, k), n, n, k);
    record(fmt::format("relay_x{}", k), relay[k].rate);
  }
  step = 6;

  // ---- latency ----
  // Max throughput of the pipeline under test: what 2 writers can commit and one relay drain.
  const double max_rate = std::min(enq1, relay[1].rate);
  record("e2e_max_rate", max_rate);
  const double seconds = 8;
  std::vector<Pct> raw_lat;
  std::vector<std::pair<double, E2eRun>> e2e_notify, e2e_poll;
  stage(
      fmt::format("latency at 10/50/90% of {:.0f} msg/s: raw produce->consume, then "
                  "commit->inbox handler with NOTIFY and poll-only ({} s each)",
                  max_rate, seconds));
  int run = 0;
  long consumer_rss = 0, relay_rss_e2e = 0;
  for (double f : {0.1, 0.5, 0.9}) {
    const double rate = std::max(10.0, f * max_rate);
    progress(fmt::format("  {:.0f}% = {:.0f} msg/s", f * 100, rate));
    raw_lat.push_back(
        raw_latency(fmt::format("{}_raw_{}", topic, run), static_cast<int>(rate), seconds));
    for (bool notify : {true, false}) {
      const auto r =
          end_to_end(c, fmt::format("{}_e2e_{}", topic, run), notify, rate, seconds, run);
      ++run;
      consumer_rss = std::max(consumer_rss, r.consumer_rss);
      relay_rss_e2e = std::max(relay_rss_e2e, r.relay_rss);
      (notify ? e2e_notify : e2e_poll).emplace_back(f, r);
      const std::string tag = fmt::format("{}_{:.0f}", notify ? "notify" : "poll", f * 100);
      record("e2e_" + tag + "_p50", r.lat.p50);
      record("e2e_" + tag + "_p99", r.lat.p99);
      record("e2e_" + tag + "_p999", r.lat.p999);
      record("e2e_" + tag + "_achieved", r.achieved);
    }
    record(fmt::format("raw_lat_{:.0f}_p50", f * 100), raw_lat.back().p50);
    record(fmt::format("raw_lat_{:.0f}_p99", f * 100), raw_lat.back().p99);
  }
  step = 8;

  // ---- cost vs backlog ----
  std::vector<std::pair<long, DrainRun>> cost;
  for (long b : backlogs) {
    stage(fmt::format("per-message relay cost at {} pending rows", b));
    const long measure = std::min(b, 100'000L);
    DrainRun sum;
    const int reps = b <= 10'000 ? 3 : 1;  // 10k rows drain in ~0.2 s: repeat
    for (int rep = 0; rep < reps; ++rep) {
      const auto r = relay_drain(c, fmt::format("{}_b{}_{}", topic, b, rep), b, measure, 1);
      sum.us_per_msg += r.us_per_msg / reps;
      sum.cpu_us_per_msg += r.cpu_us_per_msg / reps;
      sum.rss_kib = std::max(sum.rss_kib, r.rss_kib);
    }
    cost.emplace_back(b, sum);
    record(fmt::format("cost_{}_us", b), sum.us_per_msg);
    record(fmt::format("cost_{}_cpu_us", b), sum.cpu_us_per_msg);
    record(fmt::format("cost_{}_rss_kib", b), static_cast<double>(sum.rss_kib));
  }
  reset_schema(c);
  long relay_rss = std::max(relay_rss_e2e, relay[1].rss_kib);
  for (const auto& [b, r] : cost) relay_rss = std::max(relay_rss, r.rss_kib);
  record("relay_rss_kib", static_cast<double>(relay_rss));
  record("consumer_rss_kib", static_cast<double>(consumer_rss));

  // ---- the table ----
  std::printf(
      "\n| measure (%d messages of %zu B, %d keys, 1 partition) | value | ratio | target |\n", n,
      k_payload.size(), k_keys);
  std::printf("|---|---:|---:|---|\n");
  std::printf("| **limits** | | | |\n");
  std::printf("| bare INSERT of an outbox row, 1 row/tx, 2 clients | %.0f tx/s | | |\n", bare1);
  std::printf("| bare INSERT, 100 rows/tx, 2 clients | %.0f tx/s (%.0f rows/s) | | |\n", bare100,
              bare100 * 100);
  std::printf("| one single-row commit, 1 client (p50) | %.2f ms | | |\n", commit_ms);
  std::printf("| raw claim+delete drain (500-row batches, SKIP LOCKED) | %.0f rows/s | | |\n",
              drain);
  std::printf("| raw librdkafka produce, acks=all, idempotent, batched | %.0f msg/s | | |\n",
              produce);
  std::printf("| raw librdkafka consume | %.0f msg/s | | |\n", consume);
  for (std::size_t i = 0; i < raw_lat.size(); ++i) {
    std::printf("| raw produce→consume p50 / p99 at %.0f msg/s | %.1f / %.1f ms | | |\n",
                e2e_notify[i].second.offered, raw_lat[i].p50, raw_lat[i].p99);
  }
  std::printf("| **txbox** | | | |\n");
  std::printf("| enqueue, 1 msg/tx, 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n", enq1,
              enq1 / bare1, verdict(enq1 / bare1 >= 0.9));
  std::printf(
      "| enqueue, 100 msgs/tx (batch form), 2 clients | %.0f tx/s | %.2f× bare | ≥ 0.9× %s |\n",
      enq100, enq100 / bare100, verdict(enq100 / bare100 >= 0.9));
  for (int k : {1, 2, 4}) {
    const double ratio = relay[k].rate / limit;
    std::string target = fmt::format("≥ 0.5× {}", verdict(ratio >= 0.5));
    if (!peers.empty()) {
      double best = 0;
      for (const auto& [name, rate] : peers) best = std::max(best, rate);
      target += fmt::format("; {:.1f}× best peer (≥ 3× {})", relay[k].rate / best,
                            verdict(relay[k].rate >= 3 * best));
    }
    std::printf("| txbox-relay ×%d | %.0f msg/s | %.2f× min(drain, produce) | %s |\n", k,
                relay[k].rate, ratio, target.c_str());
  }
  for (const auto& [name, rate] : peers) {
    std::printf("| peer: %s | %.0f msg/s | %.2f× min(drain, produce) | |\n", name.c_str(), rate,
                rate / limit);
  }
  for (std::size_t i = 0; i < e2e_notify.size(); ++i) {
    for (const auto* set : {&e2e_notify, &e2e_poll}) {
      const auto& r = (*set)[i].second;
      const bool notify = set == &e2e_notify;
      const double bound = 2 * raw_lat[i].p99 + commit_ms;
      std::printf(
          "| commit→handler p50 / p99 / p99.9, %.0f%% load (%.0f msg/s, achieved %.0f), %s | "
          "%.1f / %.1f / %.1f ms | p99 %.1f× raw p99 | ≤ 2× raw p99 + 1 commit = %.1f ms %s |\n",
          (*set)[i].first * 100, r.offered, r.achieved, notify ? "NOTIFY" : "poll only (500 ms)",
          r.lat.p50, r.lat.p99, r.lat.p999, r.lat.p99 / raw_lat[i].p99, bound,
          verdict(r.lat.p99 <= bound));
    }
  }
  if (inbox_ratio > 0) {
    std::printf(
        "| txbox::inbox, max_batch 500 (see inbox table) | | %.2f× raw consume+INSERT | |\n",
        inbox_ratio);
  }
  std::printf("| relay peak RSS (max over runs) | %s | | ≤ 64 MiB %s |\n", mib(relay_rss).c_str(),
              verdict(relay_rss <= 64 * 1024));
  std::printf("| inbox consumer peak RSS (latency runs) | %s | | |\n", mib(consumer_rss).c_str());
  const double base = cost.empty() ? 0 : cost.front().second.us_per_msg;
  for (const auto& [b, r] : cost) {
    const bool big = b >= 10'000'000;
    std::printf(
        "| relay cost per message at %ld pending (first %ld drained) | %.1f µs wall, %.1f µs relay "
        "CPU | %.2f× %ld | %s |\n",
        b, std::min(b, 100'000L), r.us_per_msg, r.cpu_us_per_msg, r.us_per_msg / base,
        cost.front().first,
        big ? fmt::format("≤ 1.2× {}", verdict(r.us_per_msg <= 1.2 * base)).c_str() : "");
  }
  if (g_out) std::fclose(g_out);
  return 0;
}
