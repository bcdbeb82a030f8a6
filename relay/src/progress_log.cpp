// The exactly_once progress topic (see progress_log.hpp).
#include "progress_log.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "kafka_client.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/error.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

[[noreturn]] void unreachable(const std::string& what) {
  throw detail::kafka_call_error(detail::failure_kind::kafka_transient,
                                 "kafka: the progress topic: " + what);
}

// Reads each lane's partition from its start offset to its end into the lane's scan.
void scan_partitions(rd_kafka_t* rk, const std::string& topic,
                     const std::map<int, std::int64_t>& starts, std::map<int, ProgressScan>& scans,
                     clock::time_point until) {
  const detail::partition_list_ptr parts(
      rd_kafka_topic_partition_list_new(static_cast<int>(starts.size())));
  for (const auto& [lane, start] : starts) {
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), lane)->offset = start;
  }
  if (const auto code = rd_kafka_assign(rk, parts.get())) {
    unreachable(fmt::format("assign failed: {}", rd_kafka_err2str(code)));
  }
  std::size_t at_end = 0;
  while (at_end < starts.size()) {
    if (clock::now() >= until) {
      rd_kafka_assign(rk, nullptr);
      unreachable("reading it timed out");
    }
    const detail::message_ptr m(rd_kafka_consumer_poll(rk, 100));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ++at_end;
      continue;
    }
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        continue;  // librdkafka reconnects; the deadline bounds it
      rd_kafka_assign(rk, nullptr);
      unreachable(
          fmt::format("reading partition {} failed: {}", m->partition, rd_kafka_err2str(m->err)));
    }
    const auto it = scans.find(m->partition);
    if (it == scans.end() || !m->payload) continue;  // a tombstone names no rows
    try {
      it->second.add({static_cast<const char*>(m->key), m->key ? m->key_len : 0},
                     {static_cast<const char*>(m->payload), m->len});
    } catch (...) {
      rd_kafka_assign(rk, nullptr);
      throw;
    }
  }
  rd_kafka_assign(rk, nullptr);
}

}  // namespace

std::string lane_key(const std::string& id_prefix, int lane) {
  return fmt::format("{}-lane-{}", id_prefix, lane);
}

std::string legacy_progress_key(int lane) {
  return fmt::format("lane-{}", lane);
}

ProgressScan::ProgressScan(std::string key, std::string legacy_key, legacy policy)
    : m_key(std::move(key)), m_legacy_key(std::move(legacy_key)), m_legacy(policy) {}

void ProgressScan::add(std::string_view key, std::string_view value) {
  const bool old_key = key == m_legacy_key;
  if (key != m_key && !old_key) return;  // another outbox's
  auto rows = decode_progress(value);
  if (old_key && m_legacy == legacy::maybe_own) {
    m_after.insert(m_after.end(), rows.begin(), rows.end());
    return;
  }
  m_found = true;
  m_last = std::move(rows);
  m_after.clear();
}

std::vector<PublishedRow> ProgressScan::rows() const {
  std::vector<PublishedRow> out = m_last;
  std::set<std::pair<std::int64_t, std::string>> seen;
  for (const auto& r : out) seen.emplace(r.id, r.message_id);
  for (const auto& r : m_after) {
    if (seen.emplace(r.id, r.message_id).second) out.push_back(r);
  }
  return out;
}

std::string encode_progress(int lane, const std::string& relay,
                            const std::vector<PublishedRow>& rows) {
  nlohmann::json j = {{"v", 1}, {"lane", lane}, {"relay", relay}};
  auto& list = j["rows"] = nlohmann::json::array();
  for (const auto& r : rows) list.push_back({r.id, r.message_id});
  return j.dump();
}

std::vector<PublishedRow> decode_progress(std::string_view value) {
  try {
    const auto j = nlohmann::json::parse(value);
    if (j.at("v").get<int>() != 1) throw std::runtime_error("unknown version");
    std::vector<PublishedRow> rows;
    for (const auto& r : j.at("rows")) {
      rows.push_back({r.at(0).get<std::int64_t>(), r.at(1).get<std::string>()});
    }
    return rows;
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("unreadable progress record: ") + e.what());
  }
}

ProgressLog::ProgressLog(const std::map<std::string, std::string>& kafka,
                         const std::string& outbox_id, std::string topic,
                         std::chrono::milliseconds timeout)
    : m_id_prefix("txbox-" + outbox_id),
      m_topic(topic.empty() ? "txbox-progress-" + outbox_id : std::move(topic)),
      // Records keyed the old way are this outbox's only in the topic named after it.
      m_legacy(m_topic == "txbox-progress-" + outbox_id ? ProgressScan::legacy::own
                                                        : ProgressScan::legacy::maybe_own),
      m_timeout(timeout) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : connection_settings(kafka)) set_conf(conf.get(), k, v);
  set_conf(conf.get(), "isolation.level", "read_committed");
  set_conf(conf.get(), "enable.partition.eof", "true");
  set_conf(conf.get(), "enable.auto.commit", "false");
  set_conf(conf.get(), "fetch.wait.max.ms", "20");  // the end of a partition is what it waits for
  set_conf(conf.get(), "group.id", "txbox-progress-reader");  // never joins: assign() only
  m_consumer = make_client(std::move(conf), "progress reader", RD_KAFKA_CONSUMER);
}

void ProgressLog::ensure_topic() {
  const int timeout_ms = static_cast<int>(m_timeout.count());
  rd_kafka_t* rk = m_consumer.get();
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, m_topic.c_str(), nullptr);
  const auto code = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  const detail::metadata_ptr owned(md);
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
    unreachable(fmt::format("metadata request failed: {}", rd_kafka_err2str(code)));
  }
  const auto& mt = md->topics[0];
  if (mt.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (mt.partition_cnt < k_lanes) {
      throw config_error(fmt::format(
          "the progress topic '{}' has {} partition(s); exactly_once needs {} (one per lane). "
          "Hint: kafka-topics.sh --alter --topic {} --partitions {}",
          m_topic, mt.partition_cnt, k_lanes, m_topic, k_lanes));
    }
    return;
  }
  if (mt.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    unreachable(fmt::format("metadata: {}", rd_kafka_err2str(mt.err)));
  }
  const int rf = std::min(3, md->broker_cnt);
  char err[512];
  detail::new_topic_ptr nt(rd_kafka_NewTopic_new(m_topic.c_str(), k_lanes, rf, err, sizeof err));
  if (!nt) throw config_error(fmt::format("the progress topic '{}': {}", m_topic, err));
  rd_kafka_NewTopic_set_config(nt.get(), "cleanup.policy", "compact");
  rd_kafka_NewTopic_set_config(nt.get(), "segment.ms", "3600000");
  if (rf >= 3) rd_kafka_NewTopic_set_config(nt.get(), "min.insync.replicas", "2");
  rd_kafka_NewTopic_set_config(nt.get(), "unclean.leader.election.enable", "false");
  detail::admin_options_ptr options(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, err, sizeof err);
  detail::queue_ptr queue(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(rk, topics, 1, options.get(), queue.get());
  const detail::event_ptr ev(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!ev) unreachable("CreateTopics timed out");
  if (rd_kafka_event_error(ev.get())) {
    unreachable(fmt::format("CreateTopics failed: {}", rd_kafka_event_error_string(ev.get())));
  }
  std::size_t n = 0;
  const auto* result = rd_kafka_event_CreateTopics_result(ev.get());
  const rd_kafka_topic_result_t** res = rd_kafka_CreateTopics_result_topics(result, &n);
  if (n == 1 && rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_NO_ERROR &&
      rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    throw config_error(fmt::format(
        "cannot create the progress topic '{}': {}. Hint: create it: kafka-topics.sh --create "
        "--topic {} --partitions {} --replication-factor 3 --config cleanup.policy=compact "
        "--config min.insync.replicas=2, or set relay.progress_topic",
        m_topic, rd_kafka_topic_result_error_string(res[0]), m_topic, k_lanes));
  }
  spdlog::info("exactly-once: created the progress topic '{}' ({} partitions, RF {}, compacted)",
               m_topic, k_lanes, rf);
}

std::map<int, std::vector<PublishedRow>> ProgressLog::last_committed(
    const std::vector<int>& lanes) {
  const auto until = clock::now() + m_timeout;
  std::map<int, std::vector<PublishedRow>> out;
  std::vector<int> left = lanes;
  // The last record is usually the newest but one (a commit marker follows it); aborted
  // transactions, markers and other outboxes' records push it back: look further back where
  // none was found, at last from the beginning. Offsets relative to the end (not watermark
  // queries, which can outlast their timeout while a leader moves) resolve to the last stable
  // offset for read_committed.
  const std::int64_t starts_at[] = {RD_KAFKA_OFFSET_TAIL(64), RD_KAFKA_OFFSET_TAIL(4096),
                                    RD_KAFKA_OFFSET_BEGINNING};
  for (const std::int64_t offset : starts_at) {
    if (left.empty()) break;
    std::map<int, std::int64_t> starts;
    std::map<int, ProgressScan> scans;
    for (int lane : left) {
      starts[lane] = offset;
      scans.try_emplace(lane, key(lane), legacy_progress_key(lane), m_legacy);
    }
    scan_partitions(m_consumer.get(), m_topic, starts, scans, until);
    for (const auto& [lane, scan] : scans) {
      // From the beginning, what was read is all there is.
      if (!scan.found() && offset != RD_KAFKA_OFFSET_BEGINNING) continue;
      if (auto rows = scan.rows(); !rows.empty() || scan.found()) out[lane] = std::move(rows);
      std::erase(left, lane);
    }
  }
  return out;
}

}  // namespace txbox::relay
