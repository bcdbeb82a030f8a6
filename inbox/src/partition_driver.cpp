// partition_driver: tracker actions -> librdkafka (assign, pause, resume, seek).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "partition_tracker.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::inbox {
namespace {

detail::partition_list_ptr make_list(const std::vector<TopicPartition>& tps) {
  detail::partition_list_ptr list(
      rd_kafka_topic_partition_list_new(static_cast<int>(std::max<std::size_t>(tps.size(), 1))));
  for (const auto& tp : tps) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  }
  return list;
}

}  // namespace

void partition_driver::rebalance(rd_kafka_topic_partition_list_t* list, bool add,
                                 const tracker_actions& a) {
  if (add) {
    for (int i = 0; i < list->cnt; ++i) {
      auto& e = list->elems[i];
      const auto it = a.assign_at.find({e.topic, e.partition});
      e.offset = it != a.assign_at.end() ? it->second : offset_invalid;
    }
  }
  if (cooperative()) {
    detail::error_ptr e(add ? rd_kafka_incremental_assign(m_rk, list)
                            : rd_kafka_incremental_unassign(m_rk, list));
    if (e) spdlog::warn("inbox {}: {}", m_name, rd_kafka_error_string(e.get()));
  } else if (const auto e = rd_kafka_assign(m_rk, add ? list : nullptr); e) {
    spdlog::warn("inbox {}: assign: {}", m_name, rd_kafka_err2str(e));
  }
}

// rd_kafka_rebalance_protocol() answers NULL when the group no longer takes requests: a
// rebalance event queued before rd_kafka_consumer_close is served by the close after the
// group's queue was disabled (seen with librdkafka 2.8 and cooperative-sticky). The last
// answer stands then; before any, eager (whose assign fails harmlessly on a cooperative group).
bool partition_driver::cooperative() {
  if (const char* protocol = rd_kafka_rebalance_protocol(m_rk); protocol != nullptr) {
    m_cooperative = std::strcmp(protocol, "COOPERATIVE") == 0;
  }
  return m_cooperative;
}

void partition_driver::apply(const tracker_actions& a) {
  if (!a.pause.empty()) {
    auto list = make_list(a.pause);
    rd_kafka_pause_partitions(m_rk, list.get());
  }
  if (!a.seek.empty()) {
    // Moves the fetch position; messages fetched before are discarded by librdkafka.
    detail::partition_list_ptr list(
        rd_kafka_topic_partition_list_new(static_cast<int>(a.seek.size())));
    for (const auto& [tp, offset] : a.seek) {
      rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset =
          offset;
    }
    detail::error_ptr e(rd_kafka_seek_partitions(m_rk, list.get(), 5000));
    if (e) spdlog::warn("inbox {}: seek: {}", m_name, rd_kafka_error_string(e.get()));
  }
  if (!a.resume.empty()) {
    auto list = make_list(a.resume);
    rd_kafka_resume_partitions(m_rk, list.get());
  }
  for (const auto& note : a.notes) spdlog::info("inbox {}: {}", m_name, note);
  for (const auto& note : a.warnings) spdlog::warn("inbox {}: {}", m_name, note);
}

}  // namespace txbox::inbox
