// Helpers shared by the txbox-relay integration tests (relay_*_kafkatest.cpp).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness.hpp"
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

/// Records written to `topic` so far: the sum of its partitions' high watermarks (a test's
/// topic is new, so every log starts at offset 0). Retries for up to 30 s on a loaded machine;
/// throws std::runtime_error if the broker never answers.
inline std::size_t topic_size(const std::string& topic) {
  using namespace std::chrono_literals;
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
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
      std::size_t total = 0;
      for (int p = 0; p < md->topics[0].partition_cnt && code == 0; ++p) {
        std::int64_t low = 0, high = 0;
        code = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 5000);
        total += static_cast<std::size_t>(high);
      }
      if (code == RD_KAFKA_RESP_ERR_NO_ERROR) return total;
    } else if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
      code = md->topics[0].err;
    }
    why = rd_kafka_err2str(code);
    std::this_thread::sleep_for(100ms);
  }
  throw std::runtime_error("no metadata or watermarks for " + topic + ": " + why);
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

/// How often `needle` occurs in `text`.
inline int occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

}  // namespace txbox::test
