// Relay configuration: TOML file, then TXBOX_* environment variables, then flags.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <toml.hpp>

#include "txbox/conninfo.hpp"
#include "txbox/relay.hpp"
#include "txbox/validate.hpp"

extern char** environ;

namespace txbox {
namespace {

using flat_map = std::map<std::string, std::string>;

const std::set<std::string> k_known = {"database.url",
                                       "database.schema",
                                       "relay.name",
                                       "relay.batch_size",
                                       "relay.poll_interval_ms",
                                       "relay.lease_ttl_ms",
                                       "relay.listen_notify",
                                       "relay.strict_durability",
                                       "relay.durability_topics",
                                       "relay.retry_backoff_min_ms",
                                       "relay.retry_backoff_max_ms",
                                       "http.listen"};

std::string scalar_text(const toml::value& v, const std::string& key) {
  if (v.is_string()) return v.as_string().str;
  if (v.is_integer()) return std::to_string(v.as_integer());
  if (v.is_boolean()) return v.as_boolean() ? "true" : "false";
  if (v.is_floating()) return fmt::format("{}", v.as_floating());
  throw config_error(fmt::format("config key '{}' must be a string, number or boolean", key));
}

void flatten(const toml::value& table, const std::string& prefix, flat_map& out) {
  for (const auto& [k, v] : table.as_table()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    // [kafka] holds librdkafka's dotted keys, quoted or as nested tables.
    if (v.is_table()) {
      flatten(v, key, out);
    } else if (v.is_array()) {
      // A list of names (relay.durability_topics), kept comma-separated like its environment
      // variable form.
      std::string joined;
      for (const auto& item : v.as_array()) {
        if (!item.is_string()) {
          throw config_error(fmt::format("config key '{}' must be a list of strings", key));
        }
        joined += (joined.empty() ? "" : ",") + item.as_string().str;
      }
      out[key] = joined;
    } else {
      out[key] = scalar_text(v, key);
    }
  }
}

long to_long(const flat_map& m, const std::string& key, long def, long min, long max) {
  const auto it = m.find(key);
  if (it == m.end()) return def;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    throw config_error(
        fmt::format("config key '{}' = '{}' is invalid: expected a whole number "
                    "from {} to {}",
                    key, it->second, min, max));
  }
  return v;
}

bool to_bool(const flat_map& m, const std::string& key, bool def) {
  const auto it = m.find(key);
  if (it == m.end()) return def;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  throw config_error(
      fmt::format("config key '{}' = '{}' is invalid: expected true or false", key, it->second));
}

// TXBOX_DATABASE_URL -> database.url; TXBOX_KAFKA_BOOTSTRAP_SERVERS -> kafka.bootstrap.servers
void read_environment(flat_map& out) {
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    if (!entry.starts_with("TXBOX_") || entry.starts_with("TXBOX_TEST_")) continue;
    const auto eq = entry.find('=');
    std::string name = entry.substr(6, eq - 6);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto us = name.find('_');
    if (us == std::string::npos) continue;
    std::string section = name.substr(0, us);
    std::string rest = name.substr(us + 1);
    if (section == "kafka") {
      for (char& c : rest) c = c == '_' ? '.' : c;
    } else if (section != "database" && section != "relay" && section != "http") {
      continue;  // TXBOX_CACHE_DIR and other tooling variables
    }
    out[section + "." + rest] = entry.substr(eq + 1);
  }
}

}  // namespace

RelayConfig load_relay_config(const std::string& toml_path, const flat_map& overrides) {
  flat_map m;
  if (!toml_path.empty()) {
    try {
      flatten(toml::parse(toml_path), "", m);
    } catch (const config_error&) {
      throw;
    } catch (const std::exception& e) {
      throw config_error(fmt::format("cannot read config file {}: {}", toml_path, e.what()));
    }
  }
  read_environment(m);
  for (const auto& [k, v] : overrides) m[k] = v;

  RelayConfig c;
  for (const auto& [k, v] : m) {
    if (k.starts_with("kafka.")) {
      c.kafka[k.substr(6)] = v;
    } else if (!k_known.contains(k)) {
      throw config_error(
          fmt::format("unknown config key '{}'. Known keys: {}, and kafka.* (passed to librdkafka)",
                      k, fmt::join(k_known, ", ")));
    }
  }
  if (auto it = m.find("database.url"); it != m.end()) c.database_url = it->second;
  if (auto it = m.find("database.schema"); it != m.end()) c.schema = it->second;
  if (auto it = m.find("relay.name"); it != m.end()) c.name = it->second;
  if (auto it = m.find("http.listen"); it != m.end()) c.http_listen = it->second;
  c.batch_size = static_cast<int>(to_long(m, "relay.batch_size", c.batch_size, 1, 10'000));
  c.poll_interval = std::chrono::milliseconds(
      to_long(m, "relay.poll_interval_ms", c.poll_interval.count(), 10, 3'600'000));
  c.lease_ttl = std::chrono::milliseconds(
      to_long(m, "relay.lease_ttl_ms", c.lease_ttl.count(), 1'000, 3'600'000));
  c.retry_backoff_min = std::chrono::milliseconds(
      to_long(m, "relay.retry_backoff_min_ms", c.retry_backoff_min.count(), 1, 3'600'000));
  c.retry_backoff_max = std::chrono::milliseconds(
      to_long(m, "relay.retry_backoff_max_ms", c.retry_backoff_max.count(), 1, 86'400'000));
  c.listen_notify = to_bool(m, "relay.listen_notify", c.listen_notify);
  c.strict_durability = to_bool(m, "relay.strict_durability", c.strict_durability);
  if (auto it = m.find("relay.durability_topics"); it != m.end()) {
    std::size_t start = 0;
    while (start <= it->second.size()) {
      const auto comma = std::min(it->second.find(',', start), it->second.size());
      std::string name = it->second.substr(start, comma - start);
      name.erase(0, name.find_first_not_of(" \t"));
      name.erase(name.find_last_not_of(" \t") + 1);
      if (!name.empty()) c.durability_topics.push_back(name);
      start = comma + 1;
    }
  }
  validate_relay_config(c);
  return c;
}

void validate_relay_config(const RelayConfig& c) {
  if (c.database_url.empty()) {
    throw config_error(
        "database.url is not set. Hint: set it in the config file, as TXBOX_DATABASE_URL, or "
        "with --database-url (libpq URI or keyword=value form)");
  }
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
      "relay.poll_interval_ms = {}\nrelay.lease_ttl_ms = {}\nrelay.listen_notify = {}\n"
      "relay.strict_durability = {}\nrelay.durability_topics = [{}]\nhttp.listen = {}\n",
      redact_conninfo(c.database_url), c.schema, c.name.empty() ? "(host:pid)" : c.name,
      c.batch_size, c.poll_interval.count(), c.lease_ttl.count(), c.listen_notify,
      c.strict_durability, fmt::join(c.durability_topics, ", "),
      c.http_listen.empty() ? "(off)" : c.http_listen);
  for (const auto& [k, v] : c.kafka) {
    out += fmt::format("kafka.{} = {}\n", k, is_secret_key(k) ? "***" : v);
  }
  return out;
}

}  // namespace txbox
