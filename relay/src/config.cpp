// Relay configuration: TOML file, then TXBOX_* environment variables, then flags.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kafka_settings.hpp"
#include "relay_settings.hpp"
#include "txbox/config_source.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/relay.hpp"
#include "txbox/validate.hpp"

namespace txbox {

namespace detail {

const std::vector<setting<RelayConfig>>& relay_settings() {
  using C = RelayConfig;
  static const std::vector<setting<C>> table = with_database_settings<C>({
      text<C>("relay.name", &C::name, "relay identity in leases and logs",
              [](const std::string& v) { return or_when_empty(v, "(host:pid)"); }),
      number<C>("relay.batch_size", &C::batch_size, 1, 10'000, "rows claimed per shard per round"),
      number<C>("relay.max_batch_bytes", &C::max_batch_bytes, 1L << 20, 1L << 32,
                "bytes a round may hold over all shards (payload, key, headers + ~1 KiB a "
                "message); also the default of kafka.queue.buffering.max.kbytes"),
      number<C>("relay.poll_interval_ms", &C::poll_interval, 10, 3'600'000,
                "an idle relay claims at least this often, whatever the probe sees"),
      number<C>("relay.probe_interval_ms", &C::probe_interval, 0, 1'000,
                "an idle relay probes the outbox's id sequence at least this often (every 1 ms "
                "after a sign of work); 0: no probe, poll_interval_ms and NOTIFY only"),
      number<C>("relay.lease_ttl_ms", &C::lease_ttl, 1'000, 3'600'000,
                "a dead relay's shards move to the others after this"),
      flag<C>("relay.listen_notify", &C::listen_notify,
              "also LISTEN on \"<schema>.outbox\" for a NOTIFY the application sends after its "
              "commit (writers do not NOTIFY since migration V6)"),
      flag<C>("relay.strict_durability", &C::strict_durability,
              "refuse topics with replication.factor < 3, min.insync.replicas < 2 or unclean "
              "leader election"),
      list<C>("relay.durability_topics", &C::durability_topics,
              "topics whose durability is checked at start besides those in the outbox"),
      number<C>("relay.retry_backoff_min_ms", &C::retry_backoff_min, 1, 3'600'000,
                "first wait after a failure (database, broker, a refused message)"),
      number<C>("relay.retry_backoff_max_ms", &C::retry_backoff_max, 1, 86'400'000,
                "longest wait between retries"),
      number<C>("relay.wait_for_standbys", &C::wait_for_standbys, 0, 32,
                "publish a round only after this many standbys flushed its WAL (no phantom "
                "messages after a failover; needs pg_monitor); 0: off"),
      list<C>("relay.standby_names", &C::standby_names,
              "the standbys relay.wait_for_standbys counts, by pg_stat_replication."
              "application_name; empty: every physical walsender but base backups and "
              "pg_receivewal/pg_basebackup WAL streams"),
      choice<C>(
          "relay.delivery", {"at_least_once", "exactly_once"},
          [](C& c, const std::string& v) {
            c.delivery = v == "exactly_once" ? Delivery::exactly_once : Delivery::at_least_once;
          },
          [](const C& c) {
            return std::string(c.delivery == Delivery::exactly_once ? "exactly_once"
                                                                    : "at_least_once");
          },
          "exactly_once: Kafka transactions per lane of shards, read_committed consumers see "
          "each message once (needs migration V5)"),
      text<C>(
          "relay.progress_topic", &C::progress_topic,
          "exactly_once: compacted topic of each lane's last transaction",
          [](const std::string& v) { return or_when_empty(v, "(txbox-progress-<outbox id>)"); }),
      text<C>("http.listen", &C::http_listen, "host:port for /metrics, /healthz, /readyz",
              [](const std::string& v) { return or_when_empty(v, "(off)"); }),
  });
  return table;
}

std::string relay_settings_markdown() {
  return settings_markdown(relay_settings());
}

}  // namespace detail

namespace {

// The settings exactly_once depends on.
void validate_exactly_once(const RelayConfig& c) {
  if (auto it = c.kafka.find("isolation.level");
      it != c.kafka.end() && it->second != "read_committed") {
    throw config_error(fmt::format(
        "kafka.isolation.level = {} is refused with relay.delivery = exactly_once: the relay "
        "reads its progress topic to learn what a lane's last transaction published, and an "
        "aborted transaction read as published would delete rows Kafka never kept. Remove it "
        "(read_committed is librdkafka's default)",
        it->second));
  }
  if (auto it = c.kafka.find("transaction.timeout.ms"); it != c.kafka.end()) {
    long ms = 0;
    try {
      ms = std::stol(it->second);
    } catch (const std::exception&) {
      throw config_error("kafka.transaction.timeout.ms = '" + it->second + "' is not a number");
    }
    if (ms <= c.lease_ttl.count()) {
      throw config_error(fmt::format(
          "kafka.transaction.timeout.ms = {} must exceed relay.lease_ttl_ms = {}: a relay "
          "commits a lane's transaction while it holds the lane's leases, and the broker "
          "would abort it sooner. Raise it (default: twice the lease ttl) or remove it",
          ms, c.lease_ttl.count()));
    }
  }
  if (!c.progress_topic.empty()) {
    try {
      check_topic_name(c.progress_topic);
    } catch (const message_rejected& e) {
      throw config_error(fmt::format("relay.progress_topic: {}", e.what()));
    }
  }
}

}  // namespace

RelayConfig load_relay_config(const std::string& toml_path, const config_map& overrides) {
  const config_map m = read_config(toml_path, {"database", "relay", "http", "kafka"}, overrides);
  const auto& table = detail::relay_settings();
  check_config_keys(m, detail::setting_keys(table));
  RelayConfig c;
  c.kafka = detail::kafka_settings(m);
  detail::load_settings(table, m, c);
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
  detail::check_setting_ranges(detail::relay_settings(), c);
  // acks, enable.idempotence, the timeouts...: what txbox sets on its producers.
  relay::check_managed_kafka_keys(c.kafka);
  if (c.delivery == Delivery::exactly_once) validate_exactly_once(c);
  for (const auto& topic : c.durability_topics) {
    try {
      check_topic_name(topic);
    } catch (const message_rejected& e) {
      throw config_error(fmt::format("relay.durability_topics: {}", e.what()));
    }
  }
  for (const auto& name : c.standby_names) {
    if (name.empty() || name.size() > 63) {
      throw config_error(fmt::format(
          "relay.standby_names: '{}' is not an application_name PostgreSQL shows (1 to 63 "
          "bytes). Hint: use the names in pg_stat_replication.application_name (a standby's "
          "cluster_name, or application_name in its primary_conninfo)",
          name));
    }
  }
  if (!c.standby_names.empty() && c.wait_for_standbys == 0) {
    throw config_error(fmt::format(
        "relay.standby_names = {} is set but relay.wait_for_standbys = 0: no standby is waited "
        "for. Hint: set relay.wait_for_standbys (--wait-for-standbys) to how many of them must "
        "flush a round's WAL, or remove relay.standby_names",
        fmt::join(c.standby_names, ",")));
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
  std::string out = detail::describe_settings(detail::relay_settings(), c);
  return out + detail::describe_kafka(c.kafka);
}

}  // namespace txbox
