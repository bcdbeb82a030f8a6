// Consumer configuration: TOML file, TXBOX_* environment variables, then overrides.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "consumer_settings.hpp"
#include "txbox/config_source.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/inbox.hpp"
#include "txbox/validate.hpp"

namespace txbox {

namespace detail {

const std::vector<setting<ConsumerConfig>>& consumer_settings() {
  using C = ConsumerConfig;
  static const std::vector<setting<C>> table = with_database_settings<C>({
      text<C>("consumer.name", &C::name,
              "inbox identity (required); also the Kafka group.id unless kafka.group.id"),
      list<C>("consumer.topics", &C::topics, "topics to subscribe to (required)"),
      choice<C>(
          "consumer.start_from", {"earliest", "latest"},
          [](C& c, const std::string& v) { c.start_from_earliest = v == "earliest"; },
          [](const C& c) { return std::string(c.start_from_earliest ? "earliest" : "latest"); },
          "where a partition with no stored offset starts"),
      number<C>("consumer.max_batch", &C::max_batch, 1, 10'000, "messages per transaction"),
      number<C>("consumer.batch_wait_ms", &C::batch_wait, 0, 60'000,
                "extra wait for a fuller batch once it has a message (0: never wait)"),
      number<C>("consumer.max_attempts", &C::max_attempts, 1, 1000,
                "handler runs before on_failure applies"),
      choice<C>(
          "consumer.on_failure", {"dead_letter", "block"},
          [](C& c, const std::string& v) {
            c.on_failure = v == "block" ? FailurePolicy::block : FailurePolicy::dead_letter;
          },
          [](const C& c) {
            return std::string(c.on_failure == FailurePolicy::block ? "block" : "dead_letter");
          },
          "after max_attempts: move the message to inbox_dead, or stop the partition"),
      number<C>("consumer.retry_backoff_min_ms", &C::retry_backoff_min, 1, 3'600'000,
                "first wait before a failed message runs again"),
      number<C>("consumer.retry_backoff_max_ms", &C::retry_backoff_max, 1, 86'400'000,
                "longest wait between a message's runs"),
      number<C>("consumer.retention_hours", &C::retention, 1, 24 * 3650,
                "inbox rows older than this are deleted"),
      number<C>("consumer.cleanup_interval_ms", &C::cleanup_interval, 1000, 86'400'000,
                "how often retention runs"),
      number<C>("consumer.requeue_interval_ms", &C::requeue_interval, 100, 3'600'000,
                "how often to look for dead messages requeued by txboxctl"),
  });
  return table;
}

std::string consumer_settings_markdown() {
  return settings_markdown(consumer_settings());
}

std::string describe_consumer_config(const ConsumerConfig& c) {
  std::string out = describe_settings(consumer_settings(), c);
  return out + describe_kafka(c.kafka);
}

}  // namespace detail

ConsumerConfig load_consumer_config(const std::string& toml_path, const config_map& overrides) {
  const config_map m = read_config(toml_path, {"database", "consumer", "kafka"}, overrides);
  const auto& table = detail::consumer_settings();
  check_config_keys(m, detail::setting_keys(table));
  ConsumerConfig c;
  c.kafka = detail::kafka_settings(m);
  detail::load_settings(table, m, c);
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
  if (auto it = c.kafka.find("isolation.level");
      it != c.kafka.end() && it->second != "read_committed") {
    throw config_error(
        "kafka.isolation.level = " + it->second +
        " is refused: txbox::inbox reads with read_committed, so the messages of an aborted "
        "Kafka transaction (an exactly_once relay fenced or retrying) never reach the handler. "
        "Remove the setting");
  }
  if (c.kafka.contains("auto.offset.reset")) {
    throw config_error(
        "kafka.auto.offset.reset is managed by txbox::inbox; use consumer.start_from "
        "(earliest or latest) for partitions with no stored offset");
  }
  detail::check_setting_ranges(detail::consumer_settings(), c);
  if (c.retry_backoff_min > c.retry_backoff_max) {
    throw config_error(
        "consumer.retry_backoff_min_ms must not exceed consumer.retry_backoff_max_ms");
  }
  if (c.cleanup_batch < 1) {
    throw config_error(fmt::format(
        "ConsumerConfig::cleanup_batch = {} is invalid: the rows per cleanup DELETE must be at "
        "least 1",
        c.cleanup_batch));
  }
}

}  // namespace txbox
