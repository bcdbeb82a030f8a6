// The transaction calls of a lane's producer (see txn_producer.hpp).
#include "txn_producer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "txbox/detail/failure.hpp"
#include "txbox/detail/kafka_failure.hpp"

namespace txbox::relay {
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

void TxnProducer::init_transactions(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    rd_kafka_error_t* e =
        rd_kafka_init_transactions(m_producer.handle(), static_cast<int>(timeout.count()));
    if (!e) return;
    if (!rd_kafka_error_is_retriable(e) || clock::now() >= until) {
      throw_txn_error(e, "init_transactions");
    }
    rd_kafka_error_destroy(e);
  }
}

void TxnProducer::begin_transaction() {
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(m_producer.handle())) {
    throw_txn_error(e, "begin_transaction");
  }
}

void TxnProducer::produce_record(const std::string& topic, int partition, const std::string& key,
                                 const std::string& value) {
  const auto code = rd_kafka_producev(
      m_producer.handle(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
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

TxnEnd TxnProducer::commit(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
    const detail::error_ptr e(rd_kafka_commit_transaction(
        m_producer.handle(), static_cast<int>(std::max<std::int64_t>(left.count(), 1))));
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

bool TxnProducer::abort(std::chrono::milliseconds timeout) {
  const auto until = clock::now() + timeout;
  for (;;) {
    const detail::error_ptr e(
        rd_kafka_abort_transaction(m_producer.handle(), static_cast<int>(timeout.count())));
    if (!e) return true;
    if (rd_kafka_error_is_fatal(e.get()) || !rd_kafka_error_is_retriable(e.get()) ||
        clock::now() >= until) {
      spdlog::warn("kafka: abort_transaction failed: {}", rd_kafka_error_string(e.get()));
      return false;
    }
  }
}

}  // namespace txbox::relay
