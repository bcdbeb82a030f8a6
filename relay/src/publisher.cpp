// The publisher (see publisher.hpp).
#include "publisher.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>

#include "kafka_client.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/detail/kafka_failure.hpp"
#include "txbox/message.hpp"

namespace txbox::relay {
namespace {

static_assert(sizeof(std::uintptr_t) >= 8, "the opaque holds a generation and an index");

void* encode(std::uint32_t generation, std::size_t index) {
  return reinterpret_cast<void*>((static_cast<std::uintptr_t>(generation) << 32) |
                                 static_cast<std::uint32_t>(index));
}

Delivery failed(rd_kafka_resp_err_t err, std::string error = {}) {
  return {Delivery::state::failed, err, error.empty() ? rd_kafka_err2str(err) : std::move(error)};
}

}  // namespace

Publisher::Publisher(PublisherOptions options) : m_opt(std::move(options)) {
  make_producer();
}

void Publisher::make_producer() {
  detail::conf_ptr conf(rd_kafka_conf_new());
  auto set = [&](const std::string& k, const std::string& v) { set_conf(conf.get(), k, v); };
  // Defaults a user may override, then the user's keys, then what txbox enforces.
  set("linger.ms", "5");
  set("statistics.interval.ms", "0");
  // librdkafka's local queue holds at most relay.max_batch_bytes of rows (the relay claims
  // only while what is in flight leaves room for it): size it so, not librdkafka's 1 GB
  // default, but so that the largest message the producer accepts always fits (else it
  // would wait for room forever).
  std::size_t max_message = 1'000'000;  // librdkafka's message.max.bytes default
  if (const auto it = m_opt.kafka.find("message.max.bytes"); it != m_opt.kafka.end()) {
    std::size_t v = 0;  // not a number: librdkafka refuses it below, naming the key
    std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    max_message = std::max(max_message, v);
  }
  set("queue.buffering.max.kbytes",
      std::to_string(std::max(m_opt.max_batch_bytes, 2 * max_message) / 1024 + 1));
  // A topic that does not exist (and may not be auto-created) fails its messages after this
  // rather than holding the whole batch for librdkafka's default 30 s.
  set("topic.metadata.propagation.max.ms",
      std::to_string(std::max<long>(1000, m_opt.delivery_budget.count())));
  const bool txn = !m_opt.transactional_id.empty();
  if (txn) set("transaction.timeout.ms", std::to_string(m_opt.transaction_timeout.count()));
  for (const auto& [k, v] : m_opt.kafka) set(k, v);
  set("acks", "all");
  set("enable.idempotence", "true");
  if (txn) {
    // A message that times out fails its transaction, which is aborted whole: nothing of it
    // becomes visible, so the per-message timeout (librdkafka sets it to the transaction
    // timeout) cannot reorder a key.
    set("transactional.id", m_opt.transactional_id);
  } else {
    // Never give up on a message once handed over (0: no timeout). librdkafka times queued
    // messages out one by one: a key's message could fail while a later one of the same key
    // still went out (a documented gap), and its retry would then land behind it. Without
    // timeouts each batch reaches Kafka gapless and in order; a stale copy (a relay resumed
    // after a stall) is an exact re-send that cannot overtake anything.
    set("message.timeout.ms", "0");
  }
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_dr_msg_cb(conf.get(),
                              [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                                static_cast<Publisher*>(opaque)->on_report(*m);
                              });
  m_producer = make_client(std::move(conf), "producer");
}

// Runs inside rd_kafka_poll/flush, on the caller's thread.
void Publisher::on_report(const rd_kafka_message_t& m) {
  if ((m.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
       m.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) &&
      m.rkt != nullptr) {
    m_missing.insert(rd_kafka_topic_name(m.rkt));
  }
  if (m._private == nullptr) return;  // a record outside the round (produce_record)
  const auto opaque = reinterpret_cast<std::uintptr_t>(m._private);
  const auto generation = static_cast<std::uint32_t>(opaque >> 32);
  const auto index = static_cast<std::size_t>(opaque & 0xffffffffu);
  if (const auto it = m_streams.find(generation); it != m_streams.end()) {
    m_reports.push_back(
        {generation, index,
         m.err ? failed(m.err) : Delivery{Delivery::state::acked, RD_KAFKA_RESP_ERR_NO_ERROR, {}}});
    --m_streaming;
    // During the round's own hand-over the count may go below 0: stream() adds what it handed.
    if (--it->second == 0) m_streams.erase(it);
    return;
  }
  if (generation != m_generation || index >= m_outcomes.size() ||
      m_outcomes[index].st != Delivery::state::pending) {
    ++m_late;
    return;
  }
  Delivery& d = m_outcomes[index];
  // Not rd_kafka_message_errstr: for a producer message it returns the payload.
  d = m.err ? failed(m.err) : Delivery{Delivery::state::acked, RD_KAFKA_RESP_ERR_NO_ERROR, {}};
  --m_outstanding;
}

std::uint32_t Publisher::next_generation() {
  if (++m_generation == 0) ++m_generation;  // 0 is never a round's
  return m_generation;
}

std::size_t Publisher::send(std::vector<Row>& rows, const HoldFn& hold, const MaySendFn& may_send) {
  const auto generation = next_generation();
  m_outcomes.assign(rows.size(), Delivery{});
  const auto [lease_short, handed] = hand_over(rows, hold, may_send, generation, m_outcomes);
  m_outstanding = handed;
  return lease_short;
}

Publisher::Streamed Publisher::stream(std::vector<Row>& rows, const HoldFn& hold,
                                      const MaySendFn& may_send) {
  Streamed out{.round = next_generation(), .outcomes{}, .lease_short = 0};
  out.outcomes.assign(rows.size(), Delivery{});
  // Booked before the hand-over: a report may come while later rows are still handed over.
  m_streams[out.round] = 0;
  const auto [lease_short, handed] = hand_over(rows, hold, may_send, out.round, out.outcomes);
  out.lease_short = lease_short;
  const auto n = static_cast<std::int64_t>(handed);
  m_streaming += n;
  if ((m_streams[out.round] += n) == 0) m_streams.erase(out.round);
  return out;
}

std::vector<Publisher::Report> Publisher::reports(std::chrono::milliseconds wait) {
  // flush, not poll: a waiting relay has nothing more to add, so linger.ms would only delay
  // what is queued (librdkafka ignores linger.ms during a flush).
  if (m_streaming > 0) {
    if (wait.count() > 0) {
      rd_kafka_flush(m_producer.get(), static_cast<int>(wait.count()));
    } else {
      rd_kafka_poll(m_producer.get(), 0);
    }
  }
  std::vector<Report> out;
  out.swap(m_reports);
  return out;
}

std::pair<std::size_t, std::size_t> Publisher::hand_over(std::vector<Row>& rows, const HoldFn& hold,
                                                         const MaySendFn& may_send,
                                                         std::uint32_t generation,
                                                         std::vector<Delivery>& outcomes) {
  // librdkafka remembers that a topic does not exist and refuses it locally until it asks
  // the brokers again: ask now for the round's topics that were missing, so that a topic
  // created meanwhile is used at this attempt, not failed once more (the rows would wait
  // another backoff).
  if (!m_missing.empty()) {
    std::set<std::string> refreshed;
    for (const Row& row : rows) {
      if (m_missing.contains(row.topic) && refreshed.insert(row.topic).second) {
        refresh_metadata(row.topic);
        m_missing.erase(row.topic);
      }
    }
  }
  std::size_t handed = 0;
  // Keys whose later rows must not overtake a held or failed one (per key, not per shard: the
  // other keys of its shard go on).
  std::set<OrderKey> stopped;
  std::size_t lease_short = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Row& row = rows[i];
    Delivery& d = outcomes[i];
    if (stopped.contains(order_key(row))) {
      d = {Delivery::state::skipped, RD_KAFKA_RESP_ERR__STATE, "waits behind its key's head"};
      continue;
    }
    if (auto why = hold(row.topic)) {
      d = {Delivery::state::held, RD_KAFKA_RESP_ERR__STATE, std::move(*why)};
      stopped.insert(order_key(row));
      continue;
    }
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
      d = failed(RD_KAFKA_RESP_ERR__INVALID_ARG,
                 std::string("outbox.headers is not an array of [name, value]: ") + e.what());
      continue;
    }
    const void* key = row.key ? row.key->data() : nullptr;
    const std::size_t key_len = row.key ? row.key->size() : 0;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    bool may = true;
    while ((may = may_send())) {
      // The analyzer takes rows[i] of a later iteration for this one, whose strings are
      // released below only after librdkafka copied them (RD_KAFKA_MSG_F_COPY).
      // NOLINTNEXTLINE(clang-analyzer-cplusplus.InnerPointer)
      code = rd_kafka_producev(
          m_producer.get(), RD_KAFKA_V_TOPIC(row.topic.c_str()), RD_KAFKA_V_KEY(key, key_len),
          RD_KAFKA_V_VALUE(const_cast<char*>(row.payload.data()), row.payload.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()),
          RD_KAFKA_V_OPAQUE(encode(generation, i)), RD_KAFKA_V_END);
      if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(m_producer.get(), 10);  // wait for room in the local queue
    }
    if (!may) {
      for (std::size_t j = i; j < rows.size(); ++j) {
        outcomes[j] = {Delivery::state::skipped, RD_KAFKA_RESP_ERR__STATE, "lease about to expire"};
      }
      lease_short = rows.size() - i;
      break;
    }
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
      hdrs.release();  // rd_kafka_producev took the headers on success
      ++handed;
      std::string().swap(row.payload);
      std::string().swap(row.headers);
      std::string().swap(row.message_id);  // the key stays: the settle orders by it
    } else {
      d = failed(code);
      if (detail::classify_kafka(code) != detail::failure_kind::kafka_permanent) {
        stopped.insert(order_key(row));
      }
      if (code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
          code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        m_missing.insert(row.topic);  // refreshed before the rows' next attempt
      }
    }
  }
  return {lease_short, handed};
}

void Publisher::refresh_metadata(const std::string& topic) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(m_producer.get(), topic.c_str(), nullptr);
  if (!t) return;
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_metadata(m_producer.get(), 0, t, &md, static_cast<int>(m_opt.metadata_timeout.count()));
  rd_kafka_topic_destroy(t);
  const detail::metadata_ptr owned(md);  // set only on success
}

bool Publisher::poll(std::chrono::milliseconds wait) {
  // flush, not poll: the round is handed over whole, so linger.ms would only delay it
  // (librdkafka ignores linger.ms during a flush and sends what is queued at once).
  if (m_outstanding > 0) rd_kafka_flush(m_producer.get(), static_cast<int>(wait.count()));
  return m_outstanding == 0;
}

void Publisher::purge() {
  rd_kafka_purge(m_producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

std::vector<Delivery> Publisher::await(const std::stop_token& stop,
                                       std::chrono::milliseconds slow_after,
                                       const std::function<void()>& on_slow) {
  using namespace std::chrono_literals;
  const auto started = clock::now();
  std::optional<clock::time_point> stop_seen, purged_at;
  auto slow_at = started + slow_after;
  // librdkafka retries until Kafka acknowledges or refuses a message for good. Only a stop
  // gives up, after the grace: what is purged then may still have reached Kafka (re-sent by
  // the next owner) but nothing of this relay follows it.
  while (!poll(50ms)) {
    const auto now = clock::now();
    if (now >= slow_at) {
      on_slow();
      slow_at = clock::now() + slow_after;
    }
    // After a fatal error librdkafka delivers nothing more: fail what is left at once (it is
    // retried by a new producer, see replace_if_fatal).
    if (!purged_at && fatal_error()) {
      purge();
      purged_at = now;
    }
    if (stop.stop_requested() && !purged_at) {
      if (!stop_seen) stop_seen = now;
      if (now - *stop_seen >= m_opt.stop_grace) {
        spdlog::warn("stopping: giving up on {} unacknowledged message(s) after {} ms",
                     m_outstanding, m_opt.stop_grace.count());
        purge();
        purged_at = now;
      }
    }
    if (purged_at && now - *purged_at > 10s) {
      break;  // a purged message whose report never comes is left pending (retried later)
    }
  }
  std::vector<Delivery> out;
  out.swap(m_outcomes);
  m_outstanding = 0;
  next_generation();  // what is still outstanding is late from now on
  return out;
}

std::optional<std::string> Publisher::fatal_error() const {
  char reason[512];
  if (rd_kafka_fatal_error(m_producer.get(), reason, sizeof reason) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return std::string(reason);
}

std::optional<std::string> Publisher::replace_if_fatal() {
  auto reason = fatal_error();
  if (!reason) return std::nullopt;
  spdlog::error(
      "kafka: the producer hit a fatal error ({}); replacing it with a new one, "
      "unacknowledged messages are sent again",
      *reason);
  next_generation();  // no report of the old producer books anything
  m_streams.clear();  // nor of a streamed round (the caller gave their rows up)
  m_streaming = 0;
  purge();
  rd_kafka_poll(m_producer.get(), 0);  // serve what the purge reported (no row waits on it)
  m_reports.clear();
  m_producer.reset();  // may block briefly while its threads stop
  make_producer();
  return reason;
}

std::int64_t Publisher::queue_length() const {
  return m_producer ? rd_kafka_outq_len(m_producer.get()) : 0;
}

void Publisher::flush(std::chrono::milliseconds wait) {
  if (m_producer) rd_kafka_flush(m_producer.get(), static_cast<int>(wait.count()));
}

// ---------------------------------------------------------------- transactions

namespace {

// One transactional API call's error as the failure policy sees it (and frees it).
[[noreturn]] void throw_txn_error(rd_kafka_error_t* raw, const char* call) {
  const detail::error_ptr e(raw);
  const auto code = rd_kafka_error_code(e.get());
  detail::failure_kind kind = detail::failure_kind::kafka_transient;
  if (rd_kafka_error_is_fatal(e.get())) kind = detail::failure_kind::kafka_fatal;
  if (code == RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT) kind = detail::failure_kind::config;
  std::string hint;
  if (code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
      code == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED) {
    hint =
        ". Hint: grant the relay's principal Write on TransactionalId 'txbox-' (prefixed) "
        "and IdempotentWrite on the cluster (docs/guarantees.md)";
  } else if (kind == detail::failure_kind::config) {
    hint =
        ". Hint: lower kafka.transaction.timeout.ms to at most the broker's "
        "transaction.max.timeout.ms";
  }
  throw detail::kafka_call_error(
      kind, fmt::format("kafka: {} failed: {}{}", call, rd_kafka_error_string(e.get()), hint));
}

}  // namespace

void Publisher::init_transactions(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    rd_kafka_error_t* e =
        rd_kafka_init_transactions(m_producer.get(), static_cast<int>(timeout.count()));
    if (!e) return;
    if (!rd_kafka_error_is_retriable(e) || clock::now() >= until) {
      throw_txn_error(e, "init_transactions");
    }
    rd_kafka_error_destroy(e);
  }
}

void Publisher::begin_transaction() {
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(m_producer.get())) {
    throw_txn_error(e, "begin_transaction");
  }
}

void Publisher::produce_record(const std::string& topic, int partition, const std::string& key,
                               const std::string& value) {
  const auto code = rd_kafka_producev(
      m_producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(nullptr), RD_KAFKA_V_END);
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw detail::kafka_call_error(
        detail::classify_kafka(code) == detail::failure_kind::kafka_permanent
            ? detail::failure_kind::config
            : detail::failure_kind::kafka_transient,
        fmt::format("kafka: producing to '{}' [{}] failed: {}", topic, partition,
                    rd_kafka_err2str(code)));
  }
}

TxnEnd Publisher::commit(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
    const detail::error_ptr e(rd_kafka_commit_transaction(
        m_producer.get(), static_cast<int>(std::max<std::int64_t>(left.count(), 1))));
    if (!e) return {.committed = true, .fatal = false, .error = {}};
    std::string why = rd_kafka_error_string(e.get());
    if (rd_kafka_error_txn_requires_abort(e.get())) {
      const bool aborted = abort(timeout);
      return {.committed = false, .fatal = !aborted, .error = std::move(why)};
    }
    // Fatal, or still unresolved at the deadline: the commit may or may not have happened.
    if (rd_kafka_error_is_fatal(e.get()) || !rd_kafka_error_is_retriable(e.get()) ||
        clock::now() >= until) {
      return {.committed = false, .fatal = true, .error = std::move(why)};
    }
  }
}

bool Publisher::abort(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    const detail::error_ptr e(
        rd_kafka_abort_transaction(m_producer.get(), static_cast<int>(timeout.count())));
    if (!e) return true;
    if (rd_kafka_error_is_fatal(e.get()) || !rd_kafka_error_is_retriable(e.get()) ||
        clock::now() >= until) {
      spdlog::warn("kafka: abort_transaction failed: {}", rd_kafka_error_string(e.get()));
      return false;
    }
  }
}

}  // namespace txbox::relay
