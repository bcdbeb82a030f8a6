// Relay configuration: TOML file, then TXBOX_* environment variables, then flags.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "txbox/config_source.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/relay.hpp"
#include "txbox/validate.hpp"

namespace txbox {
namespace {

using flat_map = std::map<std::string, std::string>;

const std::set<std::string> k_known = {"database.url",
                                       "database.schema",
                                       "relay.name",
                                       "relay.batch_size",
                                       "relay.max_batch_bytes",
                                       "relay.poll_interval_ms",
                                       "relay.lease_ttl_ms",
                                       "relay.listen_notify",
                                       "relay.strict_durability",
                                       "relay.durability_topics",
                                       "relay.retry_backoff_min_ms",
                                       "relay.retry_backoff_max_ms",
                                       "http.listen"};

}  // namespace

RelayConfig load_relay_config(const std::string& toml_path, const flat_map& overrides) {
  const config_map m = read_config(toml_path, {"database", "relay", "http", "kafka"}, overrides);
  check_config_keys(m, k_known);
  RelayConfig c;
  for (const auto& [k, v] : m) {
    if (k.starts_with("kafka.")) c.kafka[k.substr(6)] = v;
  }
  if (auto it = m.find("database.url"); it != m.end()) c.database_url = it->second;
  if (auto it = m.find("database.schema"); it != m.end()) c.schema = it->second;
  if (auto it = m.find("relay.name"); it != m.end()) c.name = it->second;
  if (auto it = m.find("http.listen"); it != m.end()) c.http_listen = it->second;
  c.batch_size = static_cast<int>(config_long(m, "relay.batch_size", c.batch_size, 1, 10'000));
  c.max_batch_bytes = static_cast<std::size_t>(config_long(
      m, "relay.max_batch_bytes", static_cast<long>(c.max_batch_bytes), 1L << 20, 1L << 32));
  c.poll_interval = std::chrono::milliseconds(
      config_long(m, "relay.poll_interval_ms", c.poll_interval.count(), 10, 3'600'000));
  c.lease_ttl = std::chrono::milliseconds(
      config_long(m, "relay.lease_ttl_ms", c.lease_ttl.count(), 1'000, 3'600'000));
  c.retry_backoff_min = std::chrono::milliseconds(
      config_long(m, "relay.retry_backoff_min_ms", c.retry_backoff_min.count(), 1, 3'600'000));
  c.retry_backoff_max = std::chrono::milliseconds(
      config_long(m, "relay.retry_backoff_max_ms", c.retry_backoff_max.count(), 1, 86'400'000));
  c.listen_notify = config_bool(m, "relay.listen_notify", c.listen_notify);
  c.strict_durability = config_bool(m, "relay.strict_durability", c.strict_durability);
  c.durability_topics = config_list(m, "relay.durability_topics");
  validate_relay_config(c);
  return c;
}

void validate_relay_config(const RelayConfig& c) {
  if (c.database_url.empty()) {
    throw config_error(
        "database.url is not set. Hint: set it in the config file, as TXBOX_DATABASE_URL, or "
        "with --database-url (libpq URI or keyword=value form)");
  }
  check_conninfo(c.database_url, "database.url");
  check_sql_identifier(c.schema, "database.schema");
  const auto bs = c.kafka.find("bootstrap.servers");
  if (bs == c.kafka.end() || bs->second.empty()) {
    throw config_error(
        "kafka.bootstrap.servers is not set. Hint: set it in [kafka], as "
        "TXBOX_KAFKA_BOOTSTRAP_SERVERS, or with --kafka-bootstrap-servers");
  }
  if (auto it = c.kafka.find("acks");
      it != c.kafka.end() && it->second != "all" && it->second != "-1") {
    throw config_error(fmt::format(
        "kafka.acks = {} is refused: the broker would acknowledge a message before every "
        "in-sync replica has it, so a leader failure loses messages the relay already deleted "
        "from the outbox. Remove the setting (txbox always uses acks=all)",
        it->second));
  }
  if (auto it = c.kafka.find("enable.idempotence"); it != c.kafka.end() && it->second != "true") {
    throw config_error(
        "kafka.enable.idempotence = " + it->second +
        " is refused: without the idempotent producer a retried send after a lost ack writes "
        "the message twice and can reorder a key's messages. Remove the setting (txbox always "
        "enables idempotence)");
  }
  for (const char* forbidden : {"transactional.id", "enable.gapless.guarantee"}) {
    if (c.kafka.contains(forbidden)) {
      throw config_error(fmt::format("kafka.{} is managed by txbox-relay; remove it", forbidden));
    }
  }
  for (const char* timeout : {"message.timeout.ms", "delivery.timeout.ms"}) {
    if (c.kafka.contains(timeout)) {
      throw config_error(fmt::format(
          "kafka.{} is managed by txbox-relay, which never gives up on a message it handed "
          "to Kafka: librdkafka times messages out one by one, so a key's message could fail "
          "while a later one of the same key went out, and the key's order would break. "
          "Remove it",
          timeout));
    }
  }
  for (const auto& topic : c.durability_topics) {
    try {
      check_topic_name(topic);
    } catch (const message_rejected& e) {
      throw config_error(fmt::format("relay.durability_topics: {}", e.what()));
    }
  }
  if (c.max_batch_bytes < (1u << 20)) {
    throw config_error(
        fmt::format("relay.max_batch_bytes = {} is too small: the minimum is 1048576 (1 MiB)",
                    c.max_batch_bytes));
  }
  if (c.retry_backoff_min > c.retry_backoff_max) {
    throw config_error("relay.retry_backoff_min_ms must not exceed relay.retry_backoff_max_ms");
  }
  if (!c.http_listen.empty() && c.http_listen.rfind(':') == std::string::npos) {
    throw config_error("http.listen = '" + c.http_listen +
                       "' is invalid: expected host:port, e.g. 127.0.0.1:9464");
  }
}

std::string describe_relay_config(const RelayConfig& c) {
  std::string out = fmt::format(
      "database.url = {}\ndatabase.schema = {}\nrelay.name = {}\nrelay.batch_size = {}\n"
      "relay.max_batch_bytes = {}\n"
      "relay.poll_interval_ms = {}\nrelay.lease_ttl_ms = {}\nrelay.listen_notify = {}\n"
      "relay.strict_durability = {}\nrelay.durability_topics = [{}]\nhttp.listen = {}\n",
      redact_conninfo(c.database_url), c.schema, c.name.empty() ? "(host:pid)" : c.name,
      c.batch_size, c.max_batch_bytes, c.poll_interval.count(), c.lease_ttl.count(),
      c.listen_notify, c.strict_durability, fmt::join(c.durability_topics, ", "),
      c.http_listen.empty() ? "(off)" : c.http_listen);
  for (const auto& [k, v] : c.kafka) {
    out += fmt::format("kafka.{} = {}\n", k, is_secret_key(k) ? "***" : v);
  }
  return out;
}

}  // namespace txbox
