// The relay's Kafka producer (see producer.hpp).
#include "producer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "kafka_client.hpp"
#include "kafka_settings.hpp"
#include "txbox/message.hpp"

namespace txbox::relay {
namespace {

static_assert(sizeof(std::uintptr_t) >= 8, "the opaque holds a round and an index");

// Each message's opaque is its round and its row's index, so a layer never books a report
// of an earlier round (late, or purged) against a row of the current one.
void* encode(std::uint32_t round, std::size_t index) {
  return reinterpret_cast<void*>((static_cast<std::uintptr_t>(round) << 32) |
                                 static_cast<std::uint32_t>(index));
}

// librdkafka's local queue holds at most relay.max_batch_bytes of rows (the relay claims only
// while what is in flight leaves room for it): sized so, not librdkafka's 1 GB default, but
// so that the largest message the producer accepts always fits (else it would wait for room
// forever).
std::string queue_kbytes(const ProducerOptions& o) {
  std::size_t max_message = 1'000'000;  // librdkafka's message.max.bytes default
  if (const auto it = o.kafka.find("message.max.bytes"); it != o.kafka.end()) {
    std::size_t v = 0;  // not a number: librdkafka refuses it, naming the key
    std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    max_message = std::max(max_message, v);
  }
  return std::to_string(std::max(o.max_batch_bytes, 2 * max_message) / 1024 + 1);
}

}  // namespace

Producer::Producer(ProducerOptions options) : m_opt(std::move(options)) {
  make_handle();
}

void Producer::make_handle() {
  detail::conf_ptr conf(rd_kafka_conf_new());
  auto set = [&](const std::string& k, const std::string& v) { set_conf(conf.get(), k, v); };
  // Defaults a user may override, then the user's keys, then what txbox enforces.
  set("linger.ms", "5");
  set("statistics.interval.ms", "0");
  set("queue.buffering.max.kbytes", queue_kbytes(m_opt));
  // A topic that does not exist (and may not be auto-created) fails its messages after this
  // rather than holding the whole batch for librdkafka's default 30 s.
  set("topic.metadata.propagation.max.ms",
      std::to_string(std::max<long>(1000, m_opt.delivery_budget.count())));
  if (!m_opt.transactional_id.empty()) {
    set("transaction.timeout.ms", std::to_string(m_opt.transaction_timeout.count()));
  }
  for (const auto& [k, v] : m_opt.kafka) set(k, v);
  for (const auto& [k, v] : enforced_producer_settings(m_opt.transactional_id)) set(k, v);
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_dr_msg_cb(conf.get(),
                              [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                                static_cast<Producer*>(opaque)->on_report(*m);
                              });
  m_handle = make_client(std::move(conf), "producer");
}

// Runs inside rd_kafka_poll/flush, on the caller's thread.
void Producer::on_report(const rd_kafka_message_t& m) {
  if ((m.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
       m.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) &&
      m.rkt != nullptr) {
    m_missing.insert(rd_kafka_topic_name(m.rkt));
  }
  if (m._private == nullptr) return;  // a record outside the rounds (TxnProducer::produce_record)
  const auto opaque = reinterpret_cast<std::uintptr_t>(m._private);
  // Not rd_kafka_message_errstr: for a producer message it returns the payload.
  m_reports.push_back({static_cast<std::uint32_t>(opaque >> 32),
                       static_cast<std::size_t>(opaque & 0xffffffffu),
                       m.err ? Outcome::failed(m.err) : Outcome::acked()});
}

HandOver Producer::hand_over(std::vector<Row> rows, const RoundGates& gates) {
  refresh_missing_topics(rows);
  if (++m_round == 0) ++m_round;  // 0 is never a round's
  HandOver out{
      .round = m_round, .rows = std::move(rows), .outcomes{}, .lease_short = 0, .handed = 0};
  out.outcomes.assign(out.rows.size(), Outcome::pending());
  // Keys whose later rows must not overtake a held or failed one (per key, not per shard: the
  // other keys of its shard go on).
  std::set<OrderKey> stopped;
  for (std::size_t i = 0; i < out.rows.size(); ++i) {
    Row& row = out.rows[i];
    Outcome& o = out.outcomes[i];
    if (stopped.contains(order_key(row))) {
      o = Outcome::skipped("waits behind its key's head");
      continue;
    }
    if (const auto held = gates.held.find(row.topic); held != gates.held.end()) {
      o = Outcome::held(held->second);
      stopped.insert(order_key(row));
      continue;
    }
    auto sent = produce(row, out.round, i, gates.send_until);
    if (!sent) {
      for (std::size_t j = i; j < out.rows.size(); ++j) {
        out.outcomes[j] = Outcome::skipped("lease about to expire");
      }
      out.lease_short = out.rows.size() - i;
      break;
    }
    o = std::move(*sent);
    if (o.in_flight()) {
      ++out.handed;
      std::string().swap(row.payload);
      std::string().swap(row.headers);
      std::string().swap(row.message_id);  // the key stays: the settle orders by it
      continue;
    }
    if (!o.dead()) stopped.insert(order_key(row));
    if (o.missing_topic()) m_missing.insert(row.topic);  // refreshed before its next attempt
  }
  return out;
}

std::optional<Outcome> Producer::produce(const Row& row, std::uint32_t round, std::size_t index,
                                         clock::time_point send_until) {
  detail::headers_ptr hdrs(rd_kafka_headers_new(8));
  rd_kafka_header_add(hdrs.get(), headers::id, -1, row.message_id.data(),
                      static_cast<ssize_t>(row.message_id.size()));
  try {
    for (const auto& pair : nlohmann::json::parse(row.headers)) {
      const auto& k = pair.at(0).get_ref<const std::string&>();
      const auto& v = pair.at(1).get_ref<const std::string&>();
      if (k == headers::id) continue;
      rd_kafka_header_add(hdrs.get(), k.data(), static_cast<ssize_t>(k.size()), v.data(),
                          static_cast<ssize_t>(v.size()));
    }
  } catch (const std::exception& e) {
    return Outcome::failed(
        RD_KAFKA_RESP_ERR__INVALID_ARG,
        std::string("outbox.headers is not an array of [name, value]: ") + e.what());
  }
  const void* key = row.key ? row.key->data() : nullptr;
  const std::size_t key_len = row.key ? row.key->size() : 0;
  for (;;) {
    // Checked right before every hand-over: the leases must cover the row's acknowledgement.
    if (now() > send_until) return std::nullopt;
    // The analyzer takes the row for one a later hand-over frees; librdkafka copied it by then
    // (RD_KAFKA_MSG_F_COPY).
    // NOLINTNEXTLINE(clang-analyzer-cplusplus.InnerPointer)
    const auto code = rd_kafka_producev(
        m_handle.get(), RD_KAFKA_V_TOPIC(row.topic.c_str()), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE(const_cast<char*>(row.payload.data()), row.payload.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()),
        RD_KAFKA_V_OPAQUE(encode(round, index)), RD_KAFKA_V_END);
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
      hdrs.release();  // rd_kafka_producev took the headers on success
      return Outcome::pending();
    }
    if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) return Outcome::failed(code);
    rd_kafka_poll(m_handle.get(), 10);  // wait for room in the local queue
  }
}

// librdkafka remembers that a topic does not exist and refuses it locally until it asks the
// brokers again: ask now for the round's topics that were missing, so that a topic created
// meanwhile is used at this attempt, not failed once more (the rows would wait another
// backoff).
void Producer::refresh_missing_topics(const std::vector<Row>& rows) {
  if (m_missing.empty()) return;
  for (const auto& topic : topics_of(rows)) {
    if (m_missing.erase(topic) == 0) continue;
    rd_kafka_topic_t* t = rd_kafka_topic_new(m_handle.get(), topic.c_str(), nullptr);
    if (!t) continue;
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_metadata(m_handle.get(), 0, t, &md, static_cast<int>(m_opt.metadata_timeout.count()));
    rd_kafka_topic_destroy(t);
    const detail::metadata_ptr owned(md);  // set only on success
  }
}

void Producer::flush(std::chrono::milliseconds wait) {
  if (m_handle) rd_kafka_flush(m_handle.get(), static_cast<int>(wait.count()));
}

void Producer::poll(std::chrono::milliseconds wait) {
  rd_kafka_poll(m_handle.get(), static_cast<int>(wait.count()));
}

std::vector<Report> Producer::take_reports() {
  std::vector<Report> out;
  out.swap(m_reports);
  return out;
}

void Producer::purge() {
  rd_kafka_purge(m_handle.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

std::optional<std::string> Producer::fatal_error() const {
  char reason[512];
  if (rd_kafka_fatal_error(m_handle.get(), reason, sizeof reason) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return std::string(reason);
}

std::optional<std::string> Producer::replace_if_fatal() {
  auto reason = fatal_error();
  if (!reason) return std::nullopt;
  spdlog::error(
      "kafka: the producer hit a fatal error ({}); replacing it with a new one, "
      "unacknowledged messages are sent again",
      *reason);
  purge();
  rd_kafka_poll(m_handle.get(), 0);  // serve what the purge reported (no row waits on it)
  m_handle.reset();                  // may block briefly while its threads stop
  make_handle();
  return reason;
}

std::int64_t Producer::queue_length() const {
  return m_handle ? rd_kafka_outq_len(m_handle.get()) : 0;
}

}  // namespace txbox::relay
