// Helpers shared by the txbox-relay integration tests (relay_*_kafkatest.cpp).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::test {

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// The high watermark of each partition of `topic` (at `bootstrap`, default the test broker).
/// Retries for up to 30 s on a loaded machine; throws std::runtime_error if the broker never
/// answers.
inline std::map<int, std::int64_t> partition_ends(const std::string& topic,
                                                  const std::string& bootstrap = "") {
  using namespace std::chrono_literals;
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  const std::string servers = bootstrap.empty() ? endpoints().kafka : bootstrap;
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", servers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "allow.auto.create.topics", "false", err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took the conf on success
  const auto until = std::chrono::steady_clock::now() + 30s;
  std::string why;
  while (std::chrono::steady_clock::now() < until) {
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    auto code = rd_kafka_metadata(rk.get(), 0, t, &md, 5000);
    rd_kafka_topic_destroy(t);
    const detail::metadata_ptr owned(md);
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0) {
      std::map<int, std::int64_t> ends;
      for (int p = 0; p < md->topics[0].partition_cnt && code == 0; ++p) {
        std::int64_t low = 0, high = 0;
        code = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 5000);
        ends[p] = high;
      }
      if (code == RD_KAFKA_RESP_ERR_NO_ERROR) return ends;
    } else if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
      code = md->topics[0].err;
    }
    why = rd_kafka_err2str(code);
    std::this_thread::sleep_for(100ms);
  }
  throw std::runtime_error("no metadata or watermarks for " + topic + ": " + why);
}

/// Records written to `topic` so far: the sum of its partitions' high watermarks (a test's
/// topic is new, so every log starts at offset 0).
inline std::size_t topic_size(const std::string& topic) {
  std::size_t total = 0;
  for (const auto& [p, end] : partition_ends(topic)) total += static_cast<std::size_t>(end);
  return total;
}

/// The producer timestamps (CreateTime, ms since the epoch) of the records of `topic` from
/// offset `from[p]` up to `to[p]` in each partition. Throws if they do not arrive in 30 s.
inline std::vector<std::int64_t> record_timestamps(const std::string& topic,
                                                   const std::map<int, std::int64_t>& from,
                                                   const std::map<int, std::int64_t>& to) {
  using namespace std::chrono_literals;
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "group.id", unique_name("stamps").c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "enable.auto.commit", "false", err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took the conf on success
  rd_kafka_poll_set_consumer(rk.get());
  detail::partition_list_ptr parts(rd_kafka_topic_partition_list_new(static_cast<int>(to.size())));
  std::size_t expected = 0;
  for (const auto& [p, end] : to) {
    const std::int64_t start = from.contains(p) ? from.at(p) : 0;
    if (end <= start) continue;
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset = start;
    expected += static_cast<std::size_t>(end - start);
  }
  std::vector<std::int64_t> out;
  if (expected == 0) return out;
  rd_kafka_assign(rk.get(), parts.get());
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (out.size() < expected && std::chrono::steady_clock::now() < until) {
    detail::message_ptr m(rd_kafka_consumer_poll(rk.get(), 200));
    if (!m || m->err || m->offset >= to.at(m->partition)) continue;
    rd_kafka_timestamp_type_t type;
    out.push_back(rd_kafka_message_timestamp(m.get(), &type));
  }
  rd_kafka_consumer_close(rk.get());
  if (out.size() < expected) throw std::runtime_error("could not read back " + topic);
  return out;
}

/// Every record of `topic` at `bootstrap` (any Kafka, e.g. a mock cluster), until `count`
/// arrived or `timeout` passed; in partition order, then offset order.
inline std::vector<Record> read_records(const std::string& bootstrap, const std::string& topic,
                                        std::size_t count, std::chrono::milliseconds timeout) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "group.id", unique_name("records").c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(conf.get(), "auto.offset.reset", "earliest", err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took the conf on success
  rd_kafka_poll_set_consumer(rk.get());
  detail::partition_list_ptr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk.get(), topics.get());
  return collect_records(rk.get(), topic, count, timeout);
}

/// True if `topic` exists on the broker (asked without letting the broker auto-create it).
inline bool topic_exists(const std::string& topic) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "allow.auto.create.topics", "false", err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took the conf on success
  const rd_kafka_metadata_t* md = nullptr;
  const auto code = rd_kafka_metadata(rk.get(), 1, nullptr, &md, 10000);
  const detail::metadata_ptr owned(md);
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error(std::string("metadata: ") + rd_kafka_err2str(code));
  }
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic) return true;
  }
  return false;
}

/// Polls `done` every 100 ms until it is true or `timeout` passed; returns its last value.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

/// Rows in `schema`'s outbox (pending or not).
inline long outbox_rows(const std::string& schema) {
  pqxx::connection c(endpoints().pg);
  return pq::exec1(pqxx::nontransaction(c), "SELECT count(*) FROM " + schema + ".outbox")[0]
      .as<long>();
}

/// How often `needle` occurs in `text`.
inline int occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

}  // namespace txbox::test
