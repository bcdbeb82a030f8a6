// Reads each target topic's replication factor, min.insync.replicas and unclean leader election.
#include "durability.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string_view>

#include "txbox/detail/rdkafka.hpp"

namespace txbox::detail {
namespace {

// The settings txbox reads from one DescribeConfigs resource (topic or broker).
struct Settings {
  std::optional<int> min_insync;
  std::optional<bool> unclean;
  std::optional<int> default_replication;  // broker only
  std::optional<int> txn_log_replication;  // broker only: transaction.state.log.*
  std::optional<int> txn_log_min_isr;
};

std::optional<int> to_int(const char* v) {
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0') return std::nullopt;
  return static_cast<int>(n);
}

Settings read_settings(const rd_kafka_ConfigResource_t* res) {
  Settings s;
  std::size_t n = 0;
  const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(res, &n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view name = rd_kafka_ConfigEntry_name(entries[i]);
    const char* value = rd_kafka_ConfigEntry_value(entries[i]);
    if (name == "min.insync.replicas") {
      s.min_insync = to_int(value);
    } else if (name == "unclean.leader.election.enable") {
      if (value) s.unclean = std::string_view(value) == "true";
    } else if (name == "default.replication.factor") {
      s.default_replication = to_int(value);
    } else if (name == "transaction.state.log.replication.factor") {
      s.txn_log_replication = to_int(value);
    } else if (name == "transaction.state.log.min.isr") {
      s.txn_log_min_isr = to_int(value);
    }
  }
  return s;
}

bool broker_unreachable(rd_kafka_resp_err_t code) {
  return code == RD_KAFKA_RESP_ERR__TIMED_OUT || code == RD_KAFKA_RESP_ERR__TRANSPORT ||
         code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
}

}  // namespace

std::vector<std::string> TopicDurability::problems() const {
  std::vector<std::string> out;
  if (!checked) return out;
  const bool txn_log = topic == transaction_state_topic;
  const char* rf_name = exists    ? "replication.factor"
                        : txn_log ? "transaction.state.log.replication.factor"
                                  : "default.replication.factor";
  if (replication_factor < min_replication_factor) {
    out.push_back(
        fmt::format("{}={} (needs >= {})", rf_name, replication_factor, min_replication_factor));
  }
  if (min_insync_replicas < detail::min_insync_replicas) {
    out.push_back(
        fmt::format("{}={} (needs >= {})",
                    txn_log && !exists ? "transaction.state.log.min.isr" : "min.insync.replicas",
                    min_insync_replicas, detail::min_insync_replicas));
  }
  if (unclean_leader_election)
    out.emplace_back("unclean.leader.election.enable=true (needs false)");
  return out;
}

std::string TopicDurability::summary() const {
  const auto p = problems();
  return fmt::format("topic '{}'{}: {}", topic,
                     exists ? "" : " does not exist yet and would be auto-created with",
                     p.empty() ? std::string("durable") : fmt::format("{}", fmt::join(p, ", ")));
}

std::string TopicDurability::hint() const {
  if (!exists && topic == transaction_state_topic) {
    return fmt::format(
        "set transaction.state.log.replication.factor={} and transaction.state.log.min.isr={} "
        "in every broker's server.properties before the first transaction",
        min_replication_factor, detail::min_insync_replicas);
  }
  if (!exists) {
    return fmt::format(
        "create it first: kafka-topics.sh --create --topic {} --replication-factor {} --config "
        "min.insync.replicas={} --config unclean.leader.election.enable=false",
        topic, min_replication_factor, detail::min_insync_replicas);
  }
  std::vector<std::string> steps;
  if (replication_factor < min_replication_factor) {
    steps.push_back(fmt::format("raise its replication factor to {} (kafka-reassign-partitions.sh)",
                                min_replication_factor));
  }
  std::vector<std::string> add;
  if (min_insync_replicas < detail::min_insync_replicas) {
    add.push_back(fmt::format("min.insync.replicas={}", detail::min_insync_replicas));
  }
  if (unclean_leader_election) add.emplace_back("unclean.leader.election.enable=false");
  if (!add.empty()) {
    steps.push_back(fmt::format(
        "kafka-configs.sh --alter --entity-type topics --entity-name {} --add-config {}", topic,
        fmt::join(add, ",")));
  }
  return fmt::format("{}", fmt::join(steps, ", then "));
}

std::vector<TopicDurability> describe_durability(rd_kafka_t* rk,
                                                 const std::vector<std::string>& topics,
                                                 std::chrono::milliseconds timeout) {
  std::vector<TopicDurability> out(topics.size());
  std::vector<bool> have_metadata(topics.size(), false);
  int broker_id = -1;
  std::string unreachable;  // set once the broker did not answer: the rest is not asked
  const int timeout_ms = static_cast<int>(timeout.count());

  // Replica counts: one metadata request per topic (librdkafka 2.0 has no DescribeTopics).
  for (std::size_t i = 0; i < topics.size(); ++i) {
    TopicDurability& d = out[i];
    d.topic = topics[i];
    if (!unreachable.empty()) {
      d.error = unreachable;
      continue;
    }
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, d.topic.c_str(), nullptr);
    if (!t) {
      d.error = fmt::format("invalid topic: {}", rd_kafka_err2str(rd_kafka_last_error()));
      continue;
    }
    const rd_kafka_metadata_t* md = nullptr;
    const auto code = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    rd_kafka_topic_destroy(t);
    const metadata_ptr owned(md);  // rd_kafka_metadata hands over md only on success
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
      d.error = fmt::format("metadata request failed: {}", rd_kafka_err2str(code));
      if (broker_unreachable(code)) unreachable = d.error;
      continue;
    }
    if (md->broker_cnt > 0 && broker_id < 0) broker_id = md->brokers[0].id;
    if (md->topic_cnt != 1) {
      d.error = "metadata request answered no topic";
      continue;
    }
    const rd_kafka_metadata_topic_t& mt = md->topics[0];
    if (mt.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      d.exists = false;
    } else if (mt.err != RD_KAFKA_RESP_ERR_NO_ERROR || mt.partition_cnt == 0) {
      d.error = fmt::format("metadata: {}", mt.err ? rd_kafka_err2str(mt.err) : "no partitions");
      continue;
    } else {
      d.replication_factor = mt.partitions[0].replica_cnt;
      for (int p = 1; p < mt.partition_cnt; ++p) {
        d.replication_factor = std::min(d.replication_factor, mt.partitions[p].replica_cnt);
      }
    }
    have_metadata[i] = true;
  }

  // min.insync.replicas and unclean.leader.election.enable: one DescribeConfigs request for the
  // topics that exist, plus a broker's defaults if a topic does not exist yet.
  std::vector<config_resource_ptr> owned;
  std::vector<rd_kafka_ConfigResource_t*> resources;
  bool need_broker = false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!have_metadata[i]) continue;
    if (out[i].exists) {
      owned.emplace_back(
          rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, out[i].topic.c_str()));
      resources.push_back(owned.back().get());
    } else {
      need_broker = true;
    }
  }
  const std::string broker_name = std::to_string(broker_id);
  if (need_broker && broker_id >= 0) {
    owned.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, broker_name.c_str()));
    resources.push_back(owned.back().get());
  }
  std::map<std::string, Settings> topic_settings;
  std::optional<Settings> broker_settings;
  std::map<std::string, std::string> resource_errors;
  std::string request_error;
  if (!resources.empty()) {
    char err[512];
    admin_options_ptr options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
    rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, err, sizeof err);
    queue_ptr queue(rd_kafka_queue_new(rk));
    // The resources stay ours: DescribeConfigs copies what it sends.
    rd_kafka_DescribeConfigs(rk, resources.data(), resources.size(), options.get(), queue.get());
    const event_ptr ev(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
    if (!ev) {
      request_error = "DescribeConfigs timed out";
    } else if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      request_error =
          fmt::format("DescribeConfigs failed: {}", rd_kafka_event_error_string(ev.get()));
    } else if (const auto* result = rd_kafka_event_DescribeConfigs_result(ev.get())) {
      std::size_t n = 0;
      const rd_kafka_ConfigResource_t** res = rd_kafka_DescribeConfigs_result_resources(result, &n);
      for (std::size_t i = 0; i < n; ++i) {
        const std::string name = rd_kafka_ConfigResource_name(res[i]);
        const bool is_broker = rd_kafka_ConfigResource_type(res[i]) == RD_KAFKA_RESOURCE_BROKER;
        if (rd_kafka_ConfigResource_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
          const char* why = rd_kafka_ConfigResource_error_string(res[i]);
          resource_errors[is_broker ? "" : name] = fmt::format(
              "DescribeConfigs: {}",
              why && *why ? why : rd_kafka_err2str(rd_kafka_ConfigResource_error(res[i])));
        } else if (is_broker) {
          broker_settings = read_settings(res[i]);
        } else {
          topic_settings[name] = read_settings(res[i]);
        }
      }
    } else {
      request_error = "DescribeConfigs answered with an unexpected event";
    }
  }

  for (std::size_t i = 0; i < out.size(); ++i) {
    TopicDurability& d = out[i];
    if (!have_metadata[i]) continue;
    if (!request_error.empty()) {
      d.error = request_error;
      continue;
    }
    const std::string key = d.exists ? d.topic : "";
    if (const auto e = resource_errors.find(key); e != resource_errors.end()) {
      d.error = e->second;
      continue;
    }
    const Settings* s = nullptr;
    if (d.exists) {
      if (const auto it = topic_settings.find(d.topic); it != topic_settings.end()) s = &it->second;
    } else if (broker_settings) {
      s = &*broker_settings;
    }
    if (!d.exists && d.topic == transaction_state_topic && s && s->txn_log_replication &&
        s->txn_log_min_isr) {
      // Created by the first transaction with the broker's transaction.state.log.* settings.
      d.replication_factor = *s->txn_log_replication;
      d.min_insync_replicas = *s->txn_log_min_isr;
      d.checked = true;
      continue;
    }
    if (!s || !s->min_insync || !s->unclean || (!d.exists && !s->default_replication)) {
      d.error = d.exists ? "DescribeConfigs returned no min.insync.replicas or "
                           "unclean.leader.election.enable for the topic"
                         : "the topic does not exist and the broker's defaults could not be read";
      continue;
    }
    if (!d.exists) d.replication_factor = *s->default_replication;
    d.min_insync_replicas = *s->min_insync;
    d.unclean_leader_election = *s->unclean;
    d.checked = true;
  }
  return out;
}

}  // namespace txbox::detail
