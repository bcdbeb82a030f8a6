// What the relay says at start about its client libraries, and the one warning about an old
// librdkafka on a Kafka 4 broker (issue 27). Internal to the relay.
//
// librdkafka before 2.11.1 enables its features by matching exact protocol versions in the
// broker's ApiVersions answer; Kafka 4.0 removed old protocol versions (KIP-896). Against a
// Kafka 4.x broker such a client loses SASL/GSSAPI (Kerberos) and the broker-balanced consumer
// (they needed JoinGroup v0: fixed in librdkafka 2.11.0, #5131), and keeps compression only
// because Kafka 4 still advertises Produce v0-v2 for it (KAFKA-18659, librdkafka #4956); 2.11.1
// made every feature check a range (#5130). The relay warns once, never refuses.
//
// The broker's generation is not in librdkafka's public API before DescribeCluster (2.3), so
// it is read from a broker's configuration (DescribeConfigs on the broker resource): Kafka 4.0
// removed inter.broker.protocol.version, log.message.format.version and zookeeper.connect,
// which every 3.x broker lists.
//
//   txbox::relay::BrokerVersionCheck check(cfg.kafka);  // logs at most one warning, later
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <stop_token>
#include <string>
#include <thread>

namespace txbox::relay {

/// librdkafka 2.11.1 as rd_kafka_version() encodes it (0xMMmmrrpp), without the pre-release
/// byte pp.
inline constexpr int k_rdkafka_for_kafka4 = 0x020b0100;

/// "librdkafka 2.0.2, libpqxx 6.4.5": the libraries the relay runs with (librdkafka's is the
/// library loaded, not the header compiled against).
std::string client_versions();

enum class BrokerGeneration { unknown, before_4, kafka_4_or_later };

/// The generation of the broker whose DescribeConfigs answer lists `config_names`: unknown
/// when the list is not a whole broker configuration (num.partitions missing).
BrokerGeneration broker_generation(const std::set<std::string>& config_names);

/// Whether librdkafka `rdkafka_version` (rd_kafka_version()'s encoding) earns the warning on
/// a broker of generation `g`.
bool old_client_on_kafka4(int rdkafka_version, BrokerGeneration g);

/// The warning, naming librdkafka `rdkafka_version` (rd_kafka_version_str()).
std::string old_client_warning(const std::string& rdkafka_version);

/// Asks one broker of `kafka` (librdkafka properties; their connection settings only) for its
/// configuration, within `timeout`, giving up early when `stop` is requested. unknown on any
/// failure, with the reason in `why`. Never throws.
BrokerGeneration detect_broker_generation(const std::map<std::string, std::string>& kafka,
                                          std::chrono::milliseconds timeout,
                                          const std::stop_token& stop, std::string& why);

/// The check at start, on a thread of its own (never in delivery's way): when the loaded
/// librdkafka is older than 2.11.1, detects the broker's generation (at most 10 s) and logs
/// old_client_warning() once on Kafka 4.x; a failure to detect is logged at debug.
class BrokerVersionCheck {
 public:
  explicit BrokerVersionCheck(const std::map<std::string, std::string>& kafka);
  /// Stops the check; blocks up to a quarter of a second for a request in flight.
  ~BrokerVersionCheck() = default;
  BrokerVersionCheck(const BrokerVersionCheck&) = delete;
  BrokerVersionCheck& operator=(const BrokerVersionCheck&) = delete;

 private:
  std::jthread m_thread;
};

}  // namespace txbox::relay
