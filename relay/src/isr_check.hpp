// Why Kafka is not acknowledging: the partitions of a round's topics whose in-sync replica set
// is smaller than their min.insync.replicas (Kafka then refuses acks=all writes with
// NOT_ENOUGH_REPLICAS, which librdkafka retries without telling the application). Read from
// the brokers' metadata. Internal to the relay.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace txbox::relay {

/// A partition that cannot take acks=all writes now.
struct IsrShortfall {
  std::string topic;
  int partition = 0;
  int leader = -1;       ///< broker id, -1 when the partition has none
  std::vector<int> isr;  ///< broker ids in sync
  int min_insync = 0;    ///< the topic's min.insync.replicas
  int replicas = 0;
};

/// The partitions of the topics in `min_insync` (topic -> its min.insync.replicas) whose ISR
/// is below it, or that have no leader. Empty when the brokers do not answer within `timeout`
/// (nothing is known then). Never throws for a broker problem.
std::vector<IsrShortfall> isr_shortfalls(rd_kafka_t* rk,
                                         const std::map<std::string, int>& min_insync,
                                         std::chrono::milliseconds timeout);

/// "topic 'orders' partition 0: in sync [3] of 3 replicas, min.insync.replicas=2 (leader 3)";
/// joined with "; " for several, at most `max` of them and "and N more".
std::string describe(const std::vector<IsrShortfall>& shortfalls, std::size_t max = 3);

}  // namespace txbox::relay
