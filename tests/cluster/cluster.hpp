// The 3-broker Kafka cluster the cluster tests run on (scripts/servers.sh with
// TXBOX_TEST_KAFKA_BROKERS=3, started by the cluster.servers.start fixture): its per-node
// faults, and what its metadata says about a topic's leaders and in-sync replicas.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace txbox::cluster {

using namespace std::chrono_literals;

/// One partition as the brokers' metadata describes it.
struct PartitionState {
  int leader = -1;  ///< broker id, -1: none
  std::vector<int> replicas, isr;
};

/// Runs `scripts/servers.sh CMD DIR N` on the cluster's directory; throws std::runtime_error
/// with the script's output when it fails. CMD: node-kill, node-pause, node-resume,
/// node-start, node-wipe.
void node(const std::string& cmd, int n);

/// Brings every broker back: resumes the paused, starts the stopped, and waits until all three
/// are in the metadata again. For a test's clean-up: the next test starts on a whole cluster.
void restore_all();

/// The cluster's bootstrap servers (all three brokers).
std::string bootstrap();

/// Creates `topic` (replication factor 3 unless `rf` says otherwise) with topic `configs`, and
/// waits until every partition has a leader. Throws std::runtime_error on failure.
void create_topic(const std::string& topic, int partitions, int rf = 3,
                  const std::map<std::string, std::string>& configs = {});

/// The partitions of `topic` from a metadata request to any live broker, asked again until one
/// knows the topic (a new topic reaches the brokers one by one); empty when none does within
/// `timeout`.
std::vector<PartitionState> describe(const std::string& topic,
                                     std::chrono::milliseconds timeout = 5s);

/// Polls describe() until `pred` holds for every partition of `topic` or `timeout` passed.
bool wait_partitions(const std::string& topic,
                     const std::function<bool(const PartitionState&)>& pred,
                     std::chrono::milliseconds timeout);

/// Predicates for wait_partitions.
inline bool fully_in_sync(const PartitionState& p) {
  return p.leader >= 0 && p.isr.size() == p.replicas.size();
}
inline bool has_leader(const PartitionState& p) {
  return p.leader >= 0;
}

/// The high watermark per partition of `topic` that broker `n` last wrote to its
/// replication-offset-checkpoint (every 5 s): how far its replicas have replicated.
std::map<int, std::int64_t> checkpointed_offsets(int n, const std::string& topic);

/// Seconds since `t0`, for the figures a test prints.
double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace txbox::cluster
