// The ISR check (see isr_check.hpp).
#include "isr_check.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

std::vector<IsrShortfall> isr_shortfalls(rd_kafka_t* rk,
                                         const std::map<std::string, int>& min_insync,
                                         std::chrono::milliseconds timeout) {
  std::vector<IsrShortfall> out;
  for (const auto& [name, min] : min_insync) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, name.c_str(), nullptr);
    if (!t) continue;
    // librdkafka asks one broker of its choice: a paused one answers never, so a few short
    // tries reach a live one sooner than one long one.
    const rd_kafka_metadata_t* md = nullptr;
    auto code = RD_KAFKA_RESP_ERR__TIMED_OUT;
    const int each = static_cast<int>(std::max<long>(500, timeout.count() / 3));
    for (int attempt = 0; attempt < 3 && code == RD_KAFKA_RESP_ERR__TIMED_OUT; ++attempt) {
      code = rd_kafka_metadata(rk, 0, t, &md, each);
    }
    rd_kafka_topic_destroy(t);
    const detail::metadata_ptr owned(md);  // set only on success
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) continue;
    const auto& topic = md->topics[0];
    for (int p = 0; p < topic.partition_cnt; ++p) {
      const auto& part = topic.partitions[p];
      if (part.leader >= 0 && part.isr_cnt >= min) continue;
      IsrShortfall s{.topic = name,
                     .partition = part.id,
                     .leader = part.leader,
                     .isr = {part.isrs, part.isrs + part.isr_cnt},
                     .min_insync = min,
                     .replicas = part.replica_cnt};
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string describe(const std::vector<IsrShortfall>& shortfalls, std::size_t max) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < shortfalls.size() && i < max; ++i) {
    const auto& s = shortfalls[i];
    parts.push_back(fmt::format(
        "topic '{}' partition {}: in sync [{}] of {} replicas, min.insync.replicas={} ({})",
        s.topic, s.partition, fmt::join(s.isr, ","), s.replicas, s.min_insync,
        s.leader >= 0 ? fmt::format("leader {}", s.leader) : std::string("no leader")));
  }
  if (shortfalls.size() > max) parts.push_back(fmt::format("and {} more", shortfalls.size() - max));
  return fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace txbox::relay
