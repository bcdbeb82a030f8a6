// What the relay benchmark's measurements share: clock, output, clients, the outbox's fill.
#include "relay_bench_support.hpp"
#include "bench_kafka.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <span>
#include <stdexcept>
#include <vector>

#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace bench {

using namespace txbox::detail;

std::string g_pg, g_kafka, g_relay;
const std::string k_payload(200, 'p');  // an order-event-sized payload
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
  return bench::make_kafka_client(g_kafka, type, extra);
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

// Creates the topic, produces one message and waits for its ack. Returns the producer, which
// then knows the topic's leaders (for end_offset).
kafka_ptr create_topic(const std::string& topic, int partitions) {  // NOLINT
  auto p = make_producer();
  create_kafka_topic(p.get(), topic, partitions);
  const std::string v = "warm-up";
  rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                    RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(p.get(), 30000);
  return p;
}

void reset_schema(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  n.exec("DROP TRIGGER IF EXISTS outbox_notify ON txbox.outbox");  // a NOTIFY run's
  n.exec(
      "TRUNCATE txbox.outbox; DELETE FROM txbox.outbox_dead; "
      "UPDATE txbox.outbox_leases SET owner = NULL, expires_at = '-infinity'; "
      "DELETE FROM txbox.outbox_relays");
  n.exec("VACUUM ANALYZE txbox.outbox");
}

// `n` pending rows written by SQL (fast, so that 10M rows fit in a run): the same shape as
// enqueue's rows. Rows are spread over 1000 keys and thus over the 64 shards.
// In one transaction; then VACUUM ANALYZE unless relays are already waiting for the rows.
void fill_sql(pqxx::connection& c, const std::string& topic, long n, bool relays_running) {
  pqxx::work tx(c);
  for (long from = 0; from < n; from += 500'000) {
    const long to = std::min(n, from + 500'000);
    pq::exec(
        tx,
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

void enqueue_one_per_key(pqxx::connection& c, const std::string& topic,
                         const std::string& payload) {
  pqxx::work tx(c);
  std::vector<txbox::Message> warm;
  for (int k = 0; k < k_keys; ++k) {
    warm.push_back({.topic = topic, .key = key_of(k), .payload = payload});
  }
  txbox::Outbox().enqueue(tx, std::span<const txbox::Message>(warm));
  tx.commit();
}

}  // namespace bench
