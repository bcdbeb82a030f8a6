// How durable a target topic is: replication factor (metadata), min.insync.replicas and
// unclean.leader.election.enable (DescribeConfigs), read with librdkafka's admin API.
// Internal to the relay: librdkafka 2.0 has no DescribeTopics, so metadata gives the replicas.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <string>
#include <vector>

namespace txbox::detail {

/// The minimums txbox asks of a topic: a broker failure must not lose an acknowledged message.
inline constexpr int min_replication_factor = 3;
inline constexpr int min_insync_replicas = 2;
/// Kafka's transaction log (exactly_once): checked like a target topic.
inline constexpr const char* transaction_state_topic = "__transaction_state";

/// One topic's durability settings, as the broker reports them.
struct TopicDurability {
  std::string topic;
  bool checked = false;  ///< false: the broker did not answer; `error` says why
  bool exists = true;    ///< false: the values are the broker defaults it would be created with
  int replication_factor = 0;  ///< smallest replica count over the topic's partitions
  int min_insync_replicas = 0;
  bool unclean_leader_election = false;
  std::string error;

  /// What is below the minimum, setting=value and what it needs, e.g.
  /// "replication.factor=1 (needs >= 3)"; empty when the topic is durable (or not checked).
  [[nodiscard]] std::vector<std::string> problems() const;
  /// "topic 'orders': replication.factor=1 (needs >= 3), min.insync.replicas=1 (needs >= 2)"
  [[nodiscard]] std::string summary() const;
  /// What an operator runs to fix the problems (kafka-configs.sh, kafka-reassign-partitions.sh).
  [[nodiscard]] std::string hint() const;
};

/// Describes `topics` with one metadata request per topic and one DescribeConfigs request
/// (the topics plus one broker, whose defaults stand for a topic that does not exist yet).
/// Never throws for a broker problem: an unanswered topic comes back with checked == false.
/// Blocks up to about twice `timeout`.
std::vector<TopicDurability> describe_durability(rd_kafka_t* rk,
                                                 const std::vector<std::string>& topics,
                                                 std::chrono::milliseconds timeout);

}  // namespace txbox::detail
