// The client libraries' versions and the old-librdkafka-on-Kafka-4 warning (broker_version.hpp).
#include "broker_version.hpp"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <pqxx/version>

#include "kafka_client.hpp"

namespace txbox::relay {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The whole check at start: a broker that does not answer in this time gets no warning.
constexpr milliseconds k_check_timeout{10'000};
// The longest librdkafka call of the check: how late a stop request may be served.
constexpr milliseconds k_step{250};

milliseconds left_until(steady::time_point deadline) {
  return std::max(milliseconds(0),
                  std::chrono::duration_cast<milliseconds>(deadline - steady::now()));
}

// The id of a broker the cluster's metadata names, or -1 when none answered in time.
int some_broker(rd_kafka_t* rk, steady::time_point deadline, const std::stop_token& stop,
                std::string& why) {
  while (!stop.stop_requested()) {
    const auto step = std::min(left_until(deadline), k_step);
    if (step.count() == 0) break;
    const rd_kafka_metadata_t* md = nullptr;
    const auto err = rd_kafka_metadata(rk, 0, nullptr, &md, static_cast<int>(step.count()));
    const detail::metadata_ptr owned(md);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt > 0) return md->brokers[0].id;
    why = fmt::format("metadata: {}", rd_kafka_err2str(err));
  }
  why = stop.stop_requested() ? "stopped" : "no broker answered in time (" + why + ")";
  return -1;
}

// The names a broker's DescribeConfigs answer lists, or an empty set (why says why).
std::set<std::string> broker_config_names(rd_kafka_t* rk, int broker, steady::time_point deadline,
                                          const std::stop_token& stop, std::string& why) {
  char err[512];
  const std::string name = std::to_string(broker);
  const detail::config_resource_ptr resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, name.c_str()));
  const detail::admin_options_ptr options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  rd_kafka_AdminOptions_set_request_timeout(
      options.get(), static_cast<int>(std::max(left_until(deadline), k_step).count()), err,
      sizeof err);
  const detail::queue_ptr queue(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};  // copied by DescribeConfigs
  rd_kafka_DescribeConfigs(rk, resources, 1, options.get(), queue.get());
  detail::event_ptr ev;
  while (!ev) {
    if (stop.stop_requested()) {
      why = "stopped";
      return {};
    }
    const auto step = std::min(left_until(deadline), k_step);
    if (step.count() == 0) {
      why = "DescribeConfigs timed out";
      return {};
    }
    ev.reset(rd_kafka_queue_poll(queue.get(), static_cast<int>(step.count())));
  }
  const auto* result = rd_kafka_event_DescribeConfigs_result(ev.get());
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR || !result) {
    why = fmt::format("DescribeConfigs failed: {}", rd_kafka_event_error_string(ev.get()));
    return {};
  }
  std::size_t n = 0;
  const rd_kafka_ConfigResource_t** res = rd_kafka_DescribeConfigs_result_resources(result, &n);
  if (n != 1 || rd_kafka_ConfigResource_error(res[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    why = n == 1 ? fmt::format("DescribeConfigs of broker {}: {}", broker,
                               rd_kafka_err2str(rd_kafka_ConfigResource_error(res[0])))
                 : "DescribeConfigs answered without the broker";
    return {};
  }
  std::size_t count = 0;
  const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(res[0], &count);
  std::set<std::string> names;
  for (std::size_t i = 0; i < count; ++i) names.insert(rd_kafka_ConfigEntry_name(entries[i]));
  return names;
}

}  // namespace

std::string client_versions() {
  return fmt::format("librdkafka {}, libpqxx {}", rd_kafka_version_str(), PQXX_VERSION);
}

BrokerGeneration broker_generation(const std::set<std::string>& config_names) {
  if (!config_names.contains("num.partitions")) return BrokerGeneration::unknown;
  for (const char* removed_in_4 :
       {"inter.broker.protocol.version", "log.message.format.version", "zookeeper.connect"}) {
    if (config_names.contains(removed_in_4)) return BrokerGeneration::before_4;
  }
  return BrokerGeneration::kafka_4_or_later;
}

bool old_client_on_kafka4(int rdkafka_version, BrokerGeneration g) {
  // The low byte is the pre-release number (0xff: a release): 2.11.1-RC1 counts as 2.11.1.
  return g == BrokerGeneration::kafka_4_or_later &&
         (rdkafka_version & ~0xff) < k_rdkafka_for_kafka4;
}

std::string old_client_warning(const std::string& rdkafka_version) {
  return fmt::format(
      "librdkafka {} is older than 2.11.1 and the broker is Kafka 4.x: librdkafka before 2.11.1 "
      "enables features by exact protocol versions, and Kafka 4.0 removed the old ones "
      "(KIP-896). SASL/GSSAPI (Kerberos) and the broker-balanced consumer are not enabled "
      "before librdkafka 2.11.0, and compression keeps working only because Kafka 4 still "
      "advertises Produce v0-v2 for such clients (KAFKA-18659). Hint: run txbox with "
      "librdkafka 2.11.1 or later (docs/operations.md, \"Versions\")",
      rdkafka_version);
}

BrokerGeneration detect_broker_generation(const std::map<std::string, std::string>& kafka,
                                          milliseconds timeout, const std::stop_token& stop,
                                          std::string& why) {
  try {
    const auto deadline = steady::now() + timeout;
    detail::conf_ptr conf(rd_kafka_conf_new());
    for (const auto& [k, v] : connection_settings(kafka)) set_conf(conf.get(), k, v);
    // The relay's own clients already report an unreachable broker.
    set_conf(conf.get(), "log_level", "0");
    const auto rk = make_client(std::move(conf), "client for the broker version check");
    const int broker = some_broker(rk.get(), deadline, stop, why);
    if (broker < 0) return BrokerGeneration::unknown;
    const auto names = broker_config_names(rk.get(), broker, deadline, stop, why);
    if (names.empty()) return BrokerGeneration::unknown;
    const auto g = broker_generation(names);
    if (g == BrokerGeneration::unknown) {
      why =
          fmt::format("broker {} listed {} settings, without num.partitions", broker, names.size());
    }
    return g;
  } catch (const std::exception& e) {
    why = e.what();
    return BrokerGeneration::unknown;
  }
}

BrokerVersionCheck::BrokerVersionCheck(const std::map<std::string, std::string>& kafka) {
  if ((rd_kafka_version() & ~0xff) >= k_rdkafka_for_kafka4) return;  // nothing to warn about
  m_thread = std::jthread([kafka](const std::stop_token& stop) {
    std::string why;
    const auto g = detect_broker_generation(kafka, k_check_timeout, stop, why);
    if (old_client_on_kafka4(rd_kafka_version(), g)) {
      spdlog::warn("{}", old_client_warning(rd_kafka_version_str()));
    } else if (g == BrokerGeneration::unknown) {
      spdlog::debug("broker version check: no answer, no warning: {}", why);
    } else {
      spdlog::debug("broker version check: the broker is older than Kafka 4");
    }
  });
}

}  // namespace txbox::relay
