// Consumer configuration: TOML file, TXBOX_* environment variables, then overrides.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "txbox/config_source.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/inbox.hpp"
#include "txbox/validate.hpp"

namespace txbox {
namespace {

const std::set<std::string> k_known = {"database.url",
                                       "database.schema",
                                       "consumer.name",
                                       "consumer.topics",
                                       "consumer.start_from",
                                       "consumer.max_batch",
                                       "consumer.batch_wait_ms",
                                       "consumer.max_attempts",
                                       "consumer.on_failure",
                                       "consumer.retry_backoff_min_ms",
                                       "consumer.retry_backoff_max_ms",
                                       "consumer.retention_hours",
                                       "consumer.cleanup_interval_ms",
                                       "consumer.requeue_interval_ms"};

}  // namespace

ConsumerConfig load_consumer_config(const std::string& toml_path, const config_map& overrides) {
  const config_map m = read_config(toml_path, {"database", "consumer", "kafka"}, overrides);
  check_config_keys(m, k_known);
  ConsumerConfig c;
  for (const auto& [k, v] : m) {
    if (k.starts_with("kafka.")) c.kafka[k.substr(6)] = v;
  }
  c.database_url = config_string(m, "database.url", c.database_url);
  c.schema = config_string(m, "database.schema", c.schema);
  c.name = config_string(m, "consumer.name", c.name);
  c.topics = config_list(m, "consumer.topics");
  const std::string start = config_string(m, "consumer.start_from", "earliest");
  if (start != "earliest" && start != "latest") {
    throw config_error("consumer.start_from = '" + start +
                       "' is invalid: expected earliest or latest");
  }
  c.start_from_earliest = start == "earliest";
  const std::string policy = config_string(m, "consumer.on_failure", "dead_letter");
  if (policy != "dead_letter" && policy != "block") {
    throw config_error("consumer.on_failure = '" + policy +
                       "' is invalid: expected dead_letter or block");
  }
  c.on_failure = policy == "block" ? FailurePolicy::block : FailurePolicy::dead_letter;
  c.max_batch = static_cast<int>(config_long(m, "consumer.max_batch", c.max_batch, 1, 10'000));
  c.batch_wait = std::chrono::milliseconds(
      config_long(m, "consumer.batch_wait_ms", c.batch_wait.count(), 0, 60'000));
  c.max_attempts =
      static_cast<int>(config_long(m, "consumer.max_attempts", c.max_attempts, 1, 1000));
  c.retry_backoff_min = std::chrono::milliseconds(
      config_long(m, "consumer.retry_backoff_min_ms", c.retry_backoff_min.count(), 1, 3'600'000));
  c.retry_backoff_max = std::chrono::milliseconds(
      config_long(m, "consumer.retry_backoff_max_ms", c.retry_backoff_max.count(), 1, 86'400'000));
  c.retention = std::chrono::hours(
      config_long(m, "consumer.retention_hours", c.retention.count(), 1, 24 * 3650));
  c.cleanup_interval = std::chrono::milliseconds(
      config_long(m, "consumer.cleanup_interval_ms", c.cleanup_interval.count(), 1000, 86'400'000));
  c.requeue_interval = std::chrono::milliseconds(
      config_long(m, "consumer.requeue_interval_ms", c.requeue_interval.count(), 100, 3'600'000));
  validate_consumer_config(c);
  return c;
}

void validate_consumer_config(const ConsumerConfig& c) {
  if (c.name.empty()) {
    throw config_error(
        "consumer.name is not set. Hint: name the consumer (its inbox identity and, by "
        "default, its Kafka group.id), e.g. TXBOX_CONSUMER_NAME=order-projector");
  }
  if (c.topics.empty()) {
    throw config_error(
        "consumer.topics is empty. Hint: list the topics to consume, e.g. "
        "topics = [\"orders\"] or TXBOX_CONSUMER_TOPICS=orders,payments");
  }
  for (const auto& t : c.topics) {
    try {
      check_topic_name(t);
    } catch (const error& e) {
      throw config_error(fmt::format("consumer.topics: {}", e.what()));
    }
  }
  if (c.database_url.empty()) {
    throw config_error(
        "database.url is not set. Hint: set it in the config file or as TXBOX_DATABASE_URL "
        "(libpq URI or keyword=value form)");
  }
  check_conninfo(c.database_url, "database.url");
  check_sql_identifier(c.schema, "database.schema");
  const auto bs = c.kafka.find("bootstrap.servers");
  if (bs == c.kafka.end() || bs->second.empty()) {
    throw config_error(
        "kafka.bootstrap.servers is not set. Hint: set it in [kafka] or as "
        "TXBOX_KAFKA_BOOTSTRAP_SERVERS");
  }
  if (auto it = c.kafka.find("enable.auto.commit"); it != c.kafka.end() && it->second != "false") {
    throw config_error(
        "kafka.enable.auto.commit = " + it->second +
        " is refused: auto-commit moves Kafka's offset before the handler's transaction "
        "commits, so a crash loses messages, and it is useless here: txbox::inbox keeps the "
        "offsets in PostgreSQL, in the handler's transaction. Remove the setting");
  }
  if (c.kafka.contains("auto.offset.reset")) {
    throw config_error(
        "kafka.auto.offset.reset is managed by txbox::inbox; use consumer.start_from "
        "(earliest or latest) for partitions with no stored offset");
  }
  if (c.max_batch < 1 || c.max_attempts < 1) {
    throw config_error("consumer.max_batch and consumer.max_attempts must be at least 1");
  }
  if (c.retry_backoff_min > c.retry_backoff_max) {
    throw config_error(
        "consumer.retry_backoff_min_ms must not exceed consumer.retry_backoff_max_ms");
  }
  if (c.retention.count() < 1 || c.cleanup_batch < 1) {
    throw config_error("consumer.retention_hours and the cleanup batch must be positive");
  }
}

}  // namespace txbox
