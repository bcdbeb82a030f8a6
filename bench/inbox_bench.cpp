// Inbox benchmark: txbox::inbox beside the raw limit of the same machine, in one run on one
// broker and one database. Prints a markdown table. Run through bench/run.sh.
//   inbox_bench PG_CONNINFO KAFKA_BOOTSTRAP [MESSAGES]
// Raw limit: consume + the same one-row INSERT per message, committed every 500 messages,
// offsets nowhere (no dedupe, no crash safety). txbox: one INSERT handler through the inbox.
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "bench_kafka.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/inbox.hpp"
#include "txbox/uuid.hpp"

namespace pq = txbox::pq;

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace txbox::detail;

std::string g_pg, g_kafka;
const std::string k_payload(200, 'p');

void progress(const std::string& what) {
  std::fprintf(stderr, "[inbox bench] %s\n", what.c_str());
}

double seconds_since(clk::time_point t) {
  return std::chrono::duration<double>(clk::now() - t).count();
}

kafka_ptr make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& extra) {
  return bench::make_kafka_client(g_kafka, type, extra);
}

void produce(const std::string& topic, int n) {
  auto p = make_client(RD_KAFKA_PRODUCER,
                       {{"acks", "all"}, {"enable.idempotence", "true"}, {"linger.ms", "5"}});
  // One partition, whatever the broker's num.partitions (bench/run.sh sets 6 for the peers).
  bench::create_kafka_topic(p.get(), topic, 1);
  for (int i = 0; i < n; ++i) {
    const std::string id = txbox::uuid_v7().str();
    headers_ptr h(rd_kafka_headers_new(1));
    rd_kafka_header_add(h.get(), "ce_id", -1, id.data(), id.size());
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                RD_KAFKA_V_VALUE(const_cast<char*>(k_payload.data()), k_payload.size()),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h.get()),
                RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p.get(), 10);
    }
    if (e) throw std::runtime_error(rd_kafka_err2str(e));
    (void)h.release();
    rd_kafka_poll(p.get(), 0);
  }
  rd_kafka_flush(p.get(), 60000);
}

void reset_effects(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  pq::exec0(n, "DROP TABLE IF EXISTS bench_effects");
  pq::exec0(n, "CREATE TABLE bench_effects (message_id text, payload text)");
  pq::exec0(n, "DELETE FROM txbox.inbox; DELETE FROM txbox.inbox_offsets");
  pq::exec0(n, "VACUUM ANALYZE txbox.inbox");
}

// The raw limit: a consumer and the same INSERTs, one transaction per 500 messages.
double raw_rate(const std::string& topic, int n) {
  pqxx::connection db(g_pg);
  reset_effects(db);
  auto c = make_client(RD_KAFKA_CONSUMER, {{"group.id", "raw-" + topic},
                                           {"enable.auto.commit", "false"},
                                           {"auto.offset.reset", "earliest"}});
  rd_kafka_poll_set_consumer(c.get());
  partition_list_ptr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(c.get(), topics.get());
  int done = 0;
  clk::time_point start{};
  while (done < n) {
    pqxx::work tx(db);
    int in_tx = 0;
    while (in_tx < 500 && done < n) {
      message_ptr m(rd_kafka_consumer_poll(c.get(), 1000));
      if (!m || m->err) continue;
      if (start == clk::time_point{}) start = clk::now();
      const std::string payload(static_cast<const char*>(m->payload), m->len);
      pq::exec(tx, "INSERT INTO bench_effects (message_id, payload) VALUES ($1, $2)",
               std::to_string(m->offset), payload);
      ++in_tx;
      ++done;
    }
    tx.commit();
  }
  const double s = seconds_since(start);
  rd_kafka_consumer_close(c.get());
  return n / s;
}

struct InboxRun {
  double rate = 0;
  double p50_handler_us = 0;
};

InboxRun inbox_rate(const std::string& topic, int n, int batch, const std::string& name,
                    bool savepoints = false) {
  {
    pqxx::connection db(g_pg);
    reset_effects(db);
  }
  txbox::ConsumerConfig cfg;
  cfg.name = name;
  cfg.topics = {topic};
  cfg.database_url = g_pg;
  cfg.kafka = {{"bootstrap.servers", g_kafka}};
  cfg.max_batch = batch;
  cfg.batch_wait = 20ms;
  txbox::Consumer consumer(cfg, [savepoints](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    // The savepoint variant measures what a savepoint per message would cost the inbox.
    if (savepoints) pq::exec0(tx, "SAVEPOINT per_message");
    pq::exec(tx, "INSERT INTO bench_effects (message_id, payload) VALUES ($1, $2)", m.id,
             m.payload);
    if (savepoints) pq::exec0(tx, "RELEASE SAVEPOINT per_message");
  });
  clk::time_point start{};
  while (consumer.stats().processed + consumer.stats().duplicates < static_cast<std::uint64_t>(n)) {
    const auto handled = consumer.poll_once(1000ms);
    if (handled > 0 && start == clk::time_point{}) start = clk::now();
  }
  InboxRun r;
  r.rate = n / seconds_since(start);
  const auto st = consumer.stats();
  for (std::size_t b = 0; b < st.handler_latency_buckets.size(); ++b) {
    if (st.handler_latency_counts[b] * 2 >= st.handler_latency_count) {
      r.p50_handler_us = st.handler_latency_buckets[b] * 1e6;
      break;
    }
  }
  return r;
}

// The same stream again under a consumer name whose inbox already holds every id, offsets
// removed: the dedupe path alone.
double duplicate_rate(const std::string& topic, int n, const std::string& name) {
  {
    pqxx::connection db(g_pg);
    pq::exec0(pqxx::nontransaction(db), "DELETE FROM txbox.inbox_offsets");
  }
  txbox::ConsumerConfig cfg;
  cfg.name = name;
  cfg.topics = {topic};
  cfg.database_url = g_pg;
  cfg.kafka = {{"bootstrap.servers", g_kafka}};
  txbox::Consumer consumer(cfg, [](pqxx::work&, const txbox::ReceivedMessage&) {});
  clk::time_point start{};
  while (consumer.stats().duplicates + consumer.stats().processed < static_cast<std::uint64_t>(n)) {
    if (consumer.poll_once(1000ms) > 0 && start == clk::time_point{}) start = clk::now();
  }
  return n / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: inbox_bench PG_CONNINFO KAFKA_BOOTSTRAP [MESSAGES]\n");
    return 2;
  }
  // The consumer's log lines go to stderr with the progress: stdout is the results' tables.
  spdlog::set_default_logger(spdlog::stderr_color_mt("inbox_bench"));
  g_pg = argv[1];
  g_kafka = argv[2];
  const int n = argc > 3 ? std::atoi(argv[3]) : 100000;
  const std::string topic = fmt::format("inbox_bench_{}", ::getpid());
  progress(fmt::format("producing {} messages of {} B to {}", n, k_payload.size(), topic));
  produce(topic, n);

  progress("raw consume + INSERT, 500 per transaction");
  const double raw = raw_rate(topic, n);
  std::vector<std::pair<int, InboxRun>> runs;
  for (int batch : {10, 100, 500, 2000}) {
    progress(fmt::format("txbox::inbox, max_batch {}", batch));
    runs.emplace_back(batch, inbox_rate(topic, n, batch, fmt::format("bench-{}", batch)));
  }
  progress("txbox::inbox, max_batch 500, a savepoint per message");
  const InboxRun sp = inbox_rate(topic, n, 500, "bench-sp", true);
  progress("txbox::inbox, every message a duplicate");
  const double dup = duplicate_rate(topic, n, "bench-sp");  // the last run's inbox

  std::printf("\n| inbox run (%d msgs, %zu B, 1 partition) | msgs/s | vs raw |\n|---|---:|---:|\n",
              n, k_payload.size());
  std::printf("| raw: consume + INSERT, 500 per tx, no dedupe, no offsets | %.0f | 1.00 |\n", raw);
  for (const auto& [batch, r] : runs) {
    std::printf("| txbox::inbox, max_batch %d (handler p50 ≤ %.0f µs) | %.0f | %.2f |\n", batch,
                r.p50_handler_us, r.rate, r.rate / raw);
  }
  std::printf(
      "| same, with a savepoint per message (the rejected design: design.md decision 12) | %.0f | "
      "%.2f |\n",
      sp.rate, sp.rate / raw);
  std::printf("| txbox::inbox, all duplicates (dedupe only), max_batch 500 | %.0f | %.2f |\n", dup,
              dup / raw);
  return 0;
}
