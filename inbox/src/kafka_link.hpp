// The consumer's librdkafka handle: configuration, subscription, callbacks, reachability,
// the offset mirror and watermarks. Partition positions are partition_driver's business.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "missing_topics.hpp"
#include "partition_tracker.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::inbox {

class kafka_link {
 public:
  /// Runs inside poll() or close() for every assignment change. Must not throw.
  using rebalance_fn = std::function<void(rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*)>;

  /// Creates the consumer and subscribes; throws config_error.
  kafka_link(const ConsumerConfig& cfg, rebalance_fn on_rebalance);
  ~kafka_link() { close(); }
  kafka_link(const kafka_link&) = delete;
  kafka_link& operator=(const kafka_link&) = delete;

  [[nodiscard]] rd_kafka_t* get() const { return m_rk.get(); }
  /// Leaves the group (revoking the partitions: the rebalance callback runs once more).
  /// Blocks while librdkafka leaves the group; on librdkafka < 2.3.0 with cooperative-sticky,
  /// also up to 5 s for a first assignment still on its way (see await_first_assignment).
  void close();
  [[nodiscard]] bool closed() const { return m_closed; }
  /// Throws txbox::error when the client hit a fatal error (it must be recreated).
  void throw_if_fatal() const;
  /// Waits up to `timeout` for one record or event; error events are reported here (a missing
  /// topic when librdkafka reports it, then by probe's reminders) and give nullptr.
  detail::message_ptr poll(std::chrono::milliseconds timeout);
  /// While every broker is down, a cheap metadata request every few seconds. Else, for each
  /// missing topic whose reminder is due (missing_topics), one metadata request for it: a
  /// line that it is still missing, or that it exists now.
  void probe();
  [[nodiscard]] bool down() const { return m_down; }
  /// The group moved on without us (e.g. a handler outlived max.poll.interval.ms).
  [[nodiscard]] bool assignment_lost() const;
  /// Kafka's committed offsets follow PostgreSQL's for lag tools; nothing reads them back.
  void mirror(const std::map<TopicPartition, std::int64_t>& next) const;
  /// The end offsets of `tps` asked of the brokers now (read_committed: the last stable
  /// offset), where a start_from latest partition without a stored offset starts. A partition
  /// whose end cannot be read is left out, with a warning.
  [[nodiscard]] std::map<TopicPartition, std::int64_t> ends(
      const std::vector<TopicPartition>& tps) const;
  /// Messages behind the partition's end for each partition with a known position.
  /// The fetcher's position in `tp` (the next offset it fetches), -1 when unknown.
  [[nodiscard]] std::int64_t position(const TopicPartition& tp) const;
  [[nodiscard]] std::map<std::string, std::int64_t> lag(
      const std::map<TopicPartition, partition_state>& parts) const;

 private:
  static void rebalance_trampoline(rd_kafka_t*, rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t* list, void* opaque);
  static void error_trampoline(rd_kafka_t*, int err, const char* reason, void* opaque);
  void on_error(rd_kafka_resp_err_t err, const char* reason);
  void reachable();
  void assigned(const rd_kafka_topic_partition_list_t& list) noexcept;
  void remind_missing_topics();
  [[nodiscard]] bool sticky_state_missing() const;
  void await_first_assignment();
  [[nodiscard]] std::optional<bool> topic_exists(const std::string& topic) const;
  std::string m_name;
  rebalance_fn m_on_rebalance;
  detail::kafka_ptr m_rk;
  bool m_closed = false;
  bool m_assigned_once = false;  // a first assignment arrived (librdkafka#4312, see close())
  bool m_own_rebalance = false;  // closing before any assignment: the callback is ours alone
  bool m_down = false;
  missing_topics m_missing;
  std::chrono::steady_clock::time_point m_next_probe{};
};

}  // namespace txbox::inbox
