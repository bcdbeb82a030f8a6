// The relay benchmark's limits: INSERT, enqueue and commit; raw Kafka; raw outbox drain.
#include "relay_bench_limits.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"
#include "txbox/uuid.hpp"

namespace pq = txbox::pq;

namespace bench {

using namespace std::chrono_literals;
using namespace txbox::detail;

namespace {

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

void add_headers(rd_kafka_headers_t* h) {
  const std::string id = txbox::uuid_v7().str();
  rd_kafka_header_add(h, "ce_id", -1, id.data(), static_cast<ssize_t>(id.size()));
  rd_kafka_header_add(h, "ce_source", -1, "txbox", 5);
  rd_kafka_header_add(h, "ce_specversion", -1, "1.0", 3);
  rd_kafka_header_add(h, "ce_time", -1, "2026-11-28T10:00:00.000000Z", 27);
  rd_kafka_header_add(h, "ce_type", -1, "OrderPlaced", 11);
}

}  // namespace

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
          std::vector<pq::binary_param> payloads;
          for (int r = 0; r < rows; ++r) {
            ids.push_back(txbox::uuid_v7().str());
            topics.push_back(topic);
            keys.push_back(key_of(i++));
            payloads.push_back(pq::binary(k_payload));
            json.push_back(k_headers_json);
          }
          pq::exec(tx, sql, pq::each(ids), pq::each(topics), pq::each(keys), pq::each(payloads),
                   pq::each(json));
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

// Raw produce as a batching client does it: hand messages over as fast as librdkafka takes
// them, serve delivery reports every 1000 messages (and when the queue is full), flush.
// Untimed first: one message, acknowledged, so the producer has its id, its connection and the
// topic's metadata (librdkafka 2.0 holds a message to a topic the producer does not know yet
// until its next 1 s topic scan: up to 1 s that is not throughput).
double raw_produce(const std::string& topic, int n) {
  auto rk = make_producer();
  const std::string warm = "warm-up";
  rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                    RD_KAFKA_V_VALUE(const_cast<char*>(warm.data()), warm.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(rk.get(), 30000);
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
  auto p = create_topic(topic);  // produces "warm-up" and waits for its ack
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
      const auto r = pq::exec(
          tx,
          "SELECT id, message_id, topic, key, payload, headers FROM txbox.outbox WHERE shard = $1 "
          "AND published_at IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
          shard);
      if (r.empty()) continue;
      std::string ids = "{";
      for (const auto& row : r) {
        if (ids.size() > 1) ids += ',';
        ids += row[0].c_str();
      }
      pq::exec(tx, "DELETE FROM txbox.outbox WHERE id = ANY($1::bigint[])", ids + "}");
      tx.commit();
      done += static_cast<long>(r.size());
    }
  }
  return static_cast<double>(n) / seconds_since(t0);
}

}  // namespace bench
