// The probe behind KafkaReach: a client of its own (the user's connection settings) whose
// thread asks the brokers for metadata (no topics: cheap, creates nothing) every
// probe_interval, or retry_interval while they do not answer. The loop reads the verdict
// without waiting. Internal to the relay.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <thread>

#include "kafka_reach.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

class KafkaProbe {
 public:
  /// Starts probing at once. Throws config_error when librdkafka refuses a property.
  KafkaProbe(const std::map<std::string, std::string>& kafka, ReachOptions options);
  /// Stops the probes (waits for the one running: at most probe_timeout).
  ~KafkaProbe();
  KafkaProbe(const KafkaProbe&) = delete;
  KafkaProbe& operator=(const KafkaProbe&) = delete;

  [[nodiscard]] ReachVerdict verdict() const;
  [[nodiscard]] bool reachable() const { return verdict().reachable; }
  /// The lease tick's intent now; `busy`: the shards with rows in flight.
  [[nodiscard]] LeaseIntent lease_intent(std::set<int> busy) const {
    return relay::lease_intent(verdict(), std::move(busy));
  }

 private:
  std::string probe_once();  // empty when the brokers answered, else why not
  void run(const std::stop_token& stop);

  std::string m_servers;  // kafka.bootstrap.servers, for the log line
  detail::kafka_ptr m_client;
  mutable std::mutex m_mutex;
  std::condition_variable_any m_wake;
  KafkaReach m_reach;
  std::jthread m_thread;  // last: stopped and joined first
};

}  // namespace txbox::relay
