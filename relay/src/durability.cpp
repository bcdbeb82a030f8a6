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

// What the metadata requests answered: each topic (its replica count, or why not), which
// were answered, and a broker's id (whose defaults stand for a topic that does not exist).
struct MetadataPass {
  std::vector<TopicDurability> topics;
  std::vector<bool> answered;
  int broker_id = -1;
};

enum class MetadataOutcome { answered, failed, unreachable };

// `d.topic`'s smallest replica count (or that it does not exist) from one metadata request;
// else `d.error` says why. Sets `broker_id` to the first broker the answer names, if unset.
MetadataOutcome read_replicas(rd_kafka_t* rk, TopicDurability& d, int timeout_ms, int& broker_id) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, d.topic.c_str(), nullptr);
  if (!t) {
    d.error = fmt::format("invalid topic: {}", rd_kafka_err2str(rd_kafka_last_error()));
    return MetadataOutcome::failed;
  }
  const rd_kafka_metadata_t* md = nullptr;
  const auto code = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  const metadata_ptr owned(md);  // rd_kafka_metadata hands over md only on success
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
    d.error = fmt::format("metadata request failed: {}", rd_kafka_err2str(code));
    return broker_unreachable(code) ? MetadataOutcome::unreachable : MetadataOutcome::failed;
  }
  if (md->broker_cnt > 0 && broker_id < 0) broker_id = md->brokers[0].id;
  if (md->topic_cnt != 1) {
    d.error = "metadata request answered no topic";
    return MetadataOutcome::failed;
  }
  const rd_kafka_metadata_topic_t& mt = md->topics[0];
  if (mt.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    d.exists = false;
  } else if (mt.err != RD_KAFKA_RESP_ERR_NO_ERROR || mt.partition_cnt == 0) {
    d.error = fmt::format("metadata: {}", mt.err ? rd_kafka_err2str(mt.err) : "no partitions");
    return MetadataOutcome::failed;
  } else {
    d.replication_factor = mt.partitions[0].replica_cnt;
    for (int p = 1; p < mt.partition_cnt; ++p) {
      d.replication_factor = std::min(d.replication_factor, mt.partitions[p].replica_cnt);
    }
  }
  return MetadataOutcome::answered;
}

// Replica counts: one metadata request per topic (librdkafka 2.0 has no DescribeTopics). Once
// the broker did not answer, the rest is not asked.
MetadataPass read_metadata(rd_kafka_t* rk, const std::vector<std::string>& topics, int timeout_ms) {
  MetadataPass pass;
  pass.topics.resize(topics.size());
  pass.answered.assign(topics.size(), false);
  std::string unreachable;
  for (std::size_t i = 0; i < topics.size(); ++i) {
    TopicDurability& d = pass.topics[i];
    d.topic = topics[i];
    if (!unreachable.empty()) {
      d.error = unreachable;
      continue;
    }
    const MetadataOutcome outcome = read_replicas(rk, d, timeout_ms, pass.broker_id);
    if (outcome == MetadataOutcome::unreachable) unreachable = d.error;
    pass.answered[i] = outcome == MetadataOutcome::answered;
  }
  return pass;
}

// What one DescribeConfigs request answered: settings per topic, the broker's defaults, the
// errors per resource ("" for the broker) and the request's own error.
struct ConfigsAnswer {
  std::map<std::string, Settings> topic_settings;
  std::optional<Settings> broker_settings;
  std::map<std::string, std::string> resource_errors;
  std::string request_error;
};

// Files the resources of one DescribeConfigs result into `answer`.
void read_configs_result(const rd_kafka_DescribeConfigs_result_t* result, ConfigsAnswer& answer) {
  std::size_t n = 0;
  const rd_kafka_ConfigResource_t** res = rd_kafka_DescribeConfigs_result_resources(result, &n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name = rd_kafka_ConfigResource_name(res[i]);
    const bool is_broker = rd_kafka_ConfigResource_type(res[i]) == RD_KAFKA_RESOURCE_BROKER;
    if (rd_kafka_ConfigResource_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* why = rd_kafka_ConfigResource_error_string(res[i]);
      answer.resource_errors[is_broker ? "" : name] =
          fmt::format("DescribeConfigs: {}",
                      why && *why ? why : rd_kafka_err2str(rd_kafka_ConfigResource_error(res[i])));
    } else if (is_broker) {
      answer.broker_settings = read_settings(res[i]);
    } else {
      answer.topic_settings[name] = read_settings(res[i]);
    }
  }
}

// min.insync.replicas and unclean.leader.election.enable: one DescribeConfigs request for the
// answered topics that exist, plus broker `broker_id`'s defaults if one does not exist yet.
ConfigsAnswer describe_configs(rd_kafka_t* rk, const std::vector<TopicDurability>& topics,
                               const std::vector<bool>& answered, int broker_id, int timeout_ms) {
  std::vector<config_resource_ptr> owned;
  std::vector<rd_kafka_ConfigResource_t*> resources;
  bool need_broker = false;
  for (std::size_t i = 0; i < topics.size(); ++i) {
    if (!answered[i]) continue;
    if (topics[i].exists) {
      owned.emplace_back(
          rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i].topic.c_str()));
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
  ConfigsAnswer answer;
  if (resources.empty()) return answer;
  char err[512];
  admin_options_ptr options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, err, sizeof err);
  queue_ptr queue(rd_kafka_queue_new(rk));
  // The resources stay ours: DescribeConfigs copies what it sends.
  rd_kafka_DescribeConfigs(rk, resources.data(), resources.size(), options.get(), queue.get());
  const event_ptr ev(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!ev) {
    answer.request_error = "DescribeConfigs timed out";
  } else if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    answer.request_error =
        fmt::format("DescribeConfigs failed: {}", rd_kafka_event_error_string(ev.get()));
  } else if (const auto* result = rd_kafka_event_DescribeConfigs_result(ev.get())) {
    read_configs_result(result, answer);
  } else {
    answer.request_error = "DescribeConfigs answered with an unexpected event";
  }
  return answer;
}

// Completes `d` (its metadata answered) from the DescribeConfigs answer, or says why not.
void apply_configs(TopicDurability& d, const ConfigsAnswer& answer) {
  if (!answer.request_error.empty()) {
    d.error = answer.request_error;
    return;
  }
  const std::string key = d.exists ? d.topic : "";
  if (const auto e = answer.resource_errors.find(key); e != answer.resource_errors.end()) {
    d.error = e->second;
    return;
  }
  const Settings* s = nullptr;
  if (d.exists) {
    if (const auto it = answer.topic_settings.find(d.topic); it != answer.topic_settings.end()) {
      s = &it->second;
    }
  } else if (answer.broker_settings) {
    s = &*answer.broker_settings;
  }
  if (!d.exists && d.topic == transaction_state_topic && s && s->txn_log_replication &&
      s->txn_log_min_isr) {
    // Created by the first transaction with the broker's transaction.state.log.* settings.
    d.replication_factor = *s->txn_log_replication;
    d.min_insync_replicas = *s->txn_log_min_isr;
    d.checked = true;
    return;
  }
  if (!s || !s->min_insync || !s->unclean || (!d.exists && !s->default_replication)) {
    d.error = d.exists ? "DescribeConfigs returned no min.insync.replicas or "
                         "unclean.leader.election.enable for the topic"
                       : "the topic does not exist and the broker's defaults could not be read";
    return;
  }
  if (!d.exists) d.replication_factor = *s->default_replication;
  d.min_insync_replicas = *s->min_insync;
  d.unclean_leader_election = *s->unclean;
  d.checked = true;
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
  const int timeout_ms = static_cast<int>(timeout.count());
  MetadataPass pass = read_metadata(rk, topics, timeout_ms);
  const ConfigsAnswer answer =
      describe_configs(rk, pass.topics, pass.answered, pass.broker_id, timeout_ms);
  for (std::size_t i = 0; i < pass.topics.size(); ++i) {
    if (pass.answered[i]) apply_configs(pass.topics[i], answer);
  }
  return std::move(pass.topics);
}

}  // namespace txbox::detail
