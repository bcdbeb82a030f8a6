// librdkafka client set-up (see kafka_client.hpp).
#include "kafka_client.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "txbox/detail/log_throttle.hpp"
#include "txbox/error.hpp"

namespace txbox::relay {

void set_conf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    throw config_error(fmt::format("kafka.{}: {}", key, err));
  }
}

void log_rdkafka(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level > 4) return;
  static detail::LogThrottle throttle;
  const auto line = throttle.admit(fmt::format("librdkafka {}: {}", fac, buf));
  if (!line) return;
  if (level <= 3) {
    spdlog::error("{}", *line);
  } else {
    spdlog::warn("{}", *line);
  }
}

detail::kafka_ptr make_client(detail::conf_ptr conf, const char* what, rd_kafka_type_t type) {
  char err[512];
  rd_kafka_conf_set_log_cb(conf.get(), log_rdkafka);
  detail::kafka_ptr rk(rd_kafka_new(type, conf.get(), err, sizeof err));
  if (!rk) throw config_error(fmt::format("cannot create the Kafka {}: {}", what, err));
  conf.release();  // rd_kafka_new took ownership on success
  return rk;
}

std::map<std::string, std::string> connection_settings(
    const std::map<std::string, std::string>& kafka) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : kafka) {
    for (const char* prefix : {"bootstrap.servers", "security.", "ssl.", "sasl.", "client.",
                               "socket.", "broker.", "api.version", "reconnect.", "retry."}) {
      if (k.starts_with(prefix)) out[k] = v;
    }
  }
  return out;
}

}  // namespace txbox::relay
