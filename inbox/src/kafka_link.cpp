// kafka_link: the librdkafka consumer handle and what it reports.
#include "kafka_link.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace txbox::inbox {
namespace {

using namespace std::chrono_literals;

void log_trampoline(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  // librdkafka's own lines: warnings and worse only (the error callback reports state).
  if (level <= 4) spdlog::debug("librdkafka {}: {}", fac, buf);
}

}  // namespace

kafka_link::kafka_link(const ConsumerConfig& cfg, rebalance_fn on_rebalance)
    : m_name(cfg.name), m_on_rebalance(std::move(on_rebalance)) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw config_error(fmt::format("kafka.{}: {}", k, err));
    }
  };
  set("group.id", cfg.name);
  for (const auto& [k, v] : cfg.kafka) set(k, v);
  set("enable.auto.commit", "false");
  set("enable.auto.offset.store", "false");
  set("enable.partition.eof", "false");
  // Only committed transactions (librdkafka's default, stated): an exactly_once relay's aborted
  // transactions never reach the handler; at_least_once relays write no transactions.
  set("isolation.level", "read_committed");
  set("auto.offset.reset", cfg.start_from_earliest ? "earliest" : "latest");
  // A topic that does not exist yet is looked for again every 10 s, not every 5 minutes.
  if (!cfg.kafka.contains("topic.metadata.refresh.interval.ms")) {
    set("topic.metadata.refresh.interval.ms", "10000");
  }
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_rebalance_cb(conf.get(), &rebalance_trampoline);
  rd_kafka_conf_set_error_cb(conf.get(), &error_trampoline);
  rd_kafka_conf_set_log_cb(conf.get(), &log_trampoline);
  m_rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!m_rk) throw config_error(fmt::format("cannot create the Kafka consumer: {}", err));
  (void)conf.release();  // owned by m_rk now
  rd_kafka_poll_set_consumer(m_rk.get());
  detail::partition_list_ptr topics(
      rd_kafka_topic_partition_list_new(static_cast<int>(cfg.topics.size())));
  for (const auto& t : cfg.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (const auto e = rd_kafka_subscribe(m_rk.get(), topics.get()); e) {
    throw config_error(fmt::format("cannot subscribe to {}: {}", fmt::join(cfg.topics, ", "),
                                   rd_kafka_err2str(e)));
  }
}

void kafka_link::close() {
  if (m_closed || !m_rk) return;
  m_closed = true;
  // Asked before the close: after it librdkafka no longer answers. A JoinGroup answer that
  // lands between this question and the close (microseconds) is not covered.
  const bool at_risk = sticky_state_missing();
  if (at_risk) await_first_assignment();  // none can come after the close
  rd_kafka_consumer_close(m_rk.get());
  if (at_risk && !m_assigned_once) {
    spdlog::error(
        "inbox {}: stopped after joining the group but before any assignment; the Kafka handle "
        "is left undestroyed until the process exits, because librdkafka {} aborts destroying "
        "it (librdkafka#4312). Hint: use librdkafka 2.3.0 or later with cooperative-sticky",
        m_name, rd_kafka_version_str());
    // Deliberately leaked: rd_kafka_destroy would abort the process. Nothing polls it any more,
    // so none of its callbacks (whose opaque is this object) runs again.
    (void)m_rk.release();
    return;
  }
  m_rk.reset();
}

// librdkafka before 2.3.0 (confluentinc/librdkafka#4312, fixed by #4381) aborts in
// rd_kafka_destroy ("Assertion 'assignor_state' failed") when the group's JoinGroup answer
// chose the cooperative-sticky assignor but no SyncGroup assignment has reached it yet: the
// assignor's state is only created by the first assignment, and destroying a null one
// asserts. rd_kafka_rebalance_protocol() says COOPERATIVE from the JoinGroup answer on, and
// the first assignment always reaches the rebalance callback (even an empty one).
bool kafka_link::sticky_state_missing() const {
  if (rd_kafka_version() >= 0x02030000 || m_assigned_once) return false;
  const char* protocol = rd_kafka_rebalance_protocol(m_rk.get());
  return protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
}

// Stopping between the JoinGroup and the SyncGroup answers: up to 5 s for the assignment on
// its way. The handler has no partitions yet, so that assignment is taken and given back here
// without it; records fetched meanwhile are dropped unhandled (positions live in PostgreSQL).
void kafka_link::await_first_assignment() {
  m_own_rebalance = true;
  spdlog::info(
      "inbox {}: stopping between joining the group and the first assignment; waiting up to "
      "5 s for it (librdkafka {} < 2.3.0 would abort: librdkafka#4312)",
      m_name, rd_kafka_version_str());
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!m_assigned_once && std::chrono::steady_clock::now() < until) {
    const detail::message_ptr dropped(rd_kafka_consumer_poll(m_rk.get(), 100));
  }
}

void kafka_link::throw_if_fatal() const {
  if (!m_rk) throw error("txbox::Consumer::poll_once called after the consumer was closed");
  char reason[512];
  if (rd_kafka_fatal_error(m_rk.get(), reason, sizeof reason) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw error(fmt::format("inbox {}: fatal Kafka error, the consumer must be recreated: {}",
                            m_name, reason));
  }
}

void kafka_link::rebalance_trampoline(rd_kafka_t*, rd_kafka_resp_err_t err,
                                      rd_kafka_topic_partition_list_t* list, void* opaque) {
  try {
    auto* self = static_cast<kafka_link*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) self->m_assigned_once = true;
    if (self->m_own_rebalance) {  // closing before any assignment: not the handler's business
      rd_kafka_error_t* e = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                                ? rd_kafka_incremental_assign(self->m_rk.get(), list)
                                : rd_kafka_incremental_unassign(self->m_rk.get(), list);
      if (e != nullptr) rd_kafka_error_destroy(e);
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) self->assigned(*list);
    self->m_on_rebalance(err, list);
  } catch (...) {
    // Nothing may unwind through librdkafka; on_rebalance catches its own failures.
    spdlog::error("inbox: unexpected exception in the rebalance callback");
  }
}

void kafka_link::error_trampoline(rd_kafka_t*, int err, const char* reason, void* opaque) {
  static_cast<kafka_link*>(opaque)->on_error(static_cast<rd_kafka_resp_err_t>(err), reason);
}

void kafka_link::on_error(rd_kafka_resp_err_t err, const char* reason) {
  if (m_rk && rd_kafka_fatal_error(m_rk.get(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::error("inbox {}: fatal Kafka error: {}", m_name, reason);
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !m_down) {
    m_down = true;
    spdlog::warn("inbox {}: Kafka unreachable, retrying: {}", m_name, reason);
  }
}

void kafka_link::reachable() {
  if (!m_down) return;
  m_down = false;
  spdlog::info("inbox {}: Kafka reachable again", m_name);
}

detail::message_ptr kafka_link::poll(std::chrono::milliseconds timeout) {
  detail::message_ptr m(rd_kafka_consumer_poll(
      m_rk.get(), static_cast<int>(std::max<std::int64_t>(timeout.count(), 0))));
  if (!m) return m;
  if (!m->err) {
    reachable();
    if (!m_missing.empty() && m_missing.found(rd_kafka_topic_name(m->rkt))) {
      spdlog::info("inbox {}: topic {} exists now", m_name, rd_kafka_topic_name(m->rkt));
    }
    return m;
  }
  if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
      m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    const std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
    if (m_missing.reported(topic, std::chrono::steady_clock::now())) {
      spdlog::warn("inbox {}: topic {} does not exist (yet); consuming it once it does. Hint: {}",
                   m_name, topic, missing_topic_hint);
    }
  } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    spdlog::debug("inbox {}: consume error: {}", m_name, rd_kafka_message_errstr(m.get()));
  }
  return nullptr;
}

void kafka_link::probe() {
  const auto now = std::chrono::steady_clock::now();
  if (!m_down) {
    remind_missing_topics();
    return;
  }
  if (now < m_next_probe) return;
  m_next_probe = now + 3s;
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(m_rk.get(), 0, nullptr, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    detail::metadata_ptr owned(md);
    reachable();
  }
}

// A topic reported missing has partitions assigned: it exists now. Never throws (it runs in
// librdkafka's callback, before the consumer's own handling).
void kafka_link::assigned(const rd_kafka_topic_partition_list_t& list) noexcept {
  try {
    for (int i = 0; i < list.cnt && !m_missing.empty(); ++i) {
      if (m_missing.found(list.elems[i].topic)) {
        spdlog::info("inbox {}: topic {} exists now", m_name, list.elems[i].topic);
      }
    }
  } catch (...) {
    // Only a log line lost; the reminder finds the topic later.
  }
}

void kafka_link::remind_missing_topics() {
  if (m_missing.empty()) return;
  for (const auto& r : m_missing.due(std::chrono::steady_clock::now())) {
    if (topic_exists(r.topic) == true) {
      m_missing.found(r.topic);
      spdlog::info("inbox {}: topic {} exists now", m_name, r.topic);
    } else {
      spdlog::warn(
          "inbox {}: topic {} still does not exist after {}; consuming it once it does. Hint: {}",
          m_name, r.topic, missing_for_text(r.missing_for), missing_topic_hint);
    }
  }
}

// One metadata request for `topic` (the consumer never asks the broker to create it);
// nullopt when the broker did not answer within a second.
std::optional<bool> kafka_link::topic_exists(const std::string& topic) const {
  const detail::topic_ptr rkt(rd_kafka_topic_new(m_rk.get(), topic.c_str(), nullptr));
  const rd_kafka_metadata_t* md = nullptr;
  if (!rkt ||
      rd_kafka_metadata(m_rk.get(), 0, rkt.get(), &md, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  const detail::metadata_ptr owned(md);
  return md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

bool kafka_link::assignment_lost() const {
  return rd_kafka_assignment_lost(m_rk.get()) != 0;
}

void kafka_link::mirror(const std::map<TopicPartition, std::int64_t>& next) const {
  if (next.empty()) return;
  detail::partition_list_ptr list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
  for (const auto& [tp, offset] : next) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset = offset;
  }
  rd_kafka_commit(m_rk.get(), list.get(), 1);
}

std::map<TopicPartition, std::int64_t> kafka_link::ends(
    const std::vector<TopicPartition>& tps) const {
  std::map<TopicPartition, std::int64_t> out;
  for (const auto& tp : tps) {
    std::int64_t lo = 0, hi = 0;
    const auto e = rd_kafka_query_watermark_offsets(m_rk.get(), tp.topic.c_str(), tp.partition, &lo,
                                                    &hi, 5000);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0) {
      out[tp] = hi;
    } else {
      spdlog::warn(
          "inbox {}: could not read the end of {} at assignment ({}); it starts at the end "
          "librdkafka finds, and until its first batch commits a database failure may skip "
          "what arrives meanwhile",
          m_name, tp_text(tp), rd_kafka_err2str(e));
    }
  }
  return out;
}

std::int64_t kafka_link::position(const TopicPartition& tp) const {
  const detail::partition_list_ptr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  if (rd_kafka_position(m_rk.get(), list.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
  return list->elems[0].offset;
}

std::map<std::string, std::int64_t> kafka_link::lag(
    const std::map<TopicPartition, partition_state>& parts) const {
  std::map<std::string, std::int64_t> out;
  for (const auto& [tp, state] : parts) {
    std::int64_t lo = 0, hi = 0;
    if (state.next_offset < 0 ||
        rd_kafka_get_watermark_offsets(m_rk.get(), tp.topic.c_str(), tp.partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0) {
      continue;
    }
    std::int64_t lag = std::max<std::int64_t>(hi - state.next_offset, 0);
    // Behind an exactly-once relay's transactions a commit marker takes the offset after the
    // last record, so `hi` (the last stable offset) stays one past next_offset. Once the
    // fetcher has reached `hi`, that one is the marker, not a message.
    if (lag == 1 && position(tp) >= hi) lag = 0;
    out[tp_text(tp)] = lag;
  }
  return out;
}

}  // namespace txbox::inbox
