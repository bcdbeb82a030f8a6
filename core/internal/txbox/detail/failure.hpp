// One failure policy: every exception the relay, the inbox or txboxctl catches is sorted into
// a kind that says what to do next. Internal (not installed).
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace txbox::detail {

/// What a failure means for the caller.
enum class failure_kind {
  db_transient,     ///< retry the batch from the last committed state, with backoff
  db_permanent,     ///< privileges, missing objects: an operator must act; retried slowly
  kafka_transient,  ///< broker unreachable, leader moving, not enough replicas: retry
  kafka_permanent,  ///< this message can never be delivered (too large, topic refused)
  kafka_fatal,      ///< the client lost its guarantees: replace it
  config,           ///< invalid configuration: fix it and restart
  bug,              ///< a usage or conversion error in txbox or libpqxx: logged, retried slowly
};

/// The sorted failure: kind, whether the connection must be replaced, and what to tell.
struct failure {
  failure_kind kind = failure_kind::bug;
  bool reconnect = false;  ///< the connection is lost, in doubt, or to a standby: open a new one
  std::string sqlstate;    ///< PostgreSQL's SQLSTATE when known, else empty
  std::string message;     ///< the exception's text on one line (may hold a conninfo: redact)
  std::string hint;        ///< what an operator does about it (permanent kinds), may be empty

  [[nodiscard]] bool transient() const {
    return kind == failure_kind::db_transient || kind == failure_kind::kafka_transient;
  }
};

/// A Kafka client call failed (e.g. a transactional API): `kind` says what to do next
/// (kafka_transient: retry with backoff; kafka_fatal: replace the client; config: fix it).
class kafka_call_error : public std::runtime_error {
 public:
  kafka_call_error(failure_kind k, const std::string& what) : std::runtime_error(what), kind(k) {}
  failure_kind kind;
};

/// A connection refused for a reason an operator must fix (see classify_connect_refusal).
struct connect_refusal {
  std::string sqlstate;  ///< what PostgreSQL sends with that text; empty for libpq's own checks
  std::string hint;      ///< the fix
};

/// Whether a failed connection's text (`libpq_message`) reports a configuration mistake: a
/// database that does not exist, failed authentication, an option value libpq refuses, a TLS
/// setting the server does not match. nullopt when the cause may pass by itself (connection
/// refused, timeout, a server starting or shutting down, too many connections, a host name
/// that does not resolve). libpq gives no SQLSTATE for a failed connection (libpqxx 6.4
/// throws broken_connection with PQerrorMessage), so the text is read: libpq's own checks,
/// and the server's messages in English (another lc_messages is not recognised: those
/// refusals stay transient). classify() sorts a recognised refusal as db_permanent.
std::optional<connect_refusal> classify_connect_refusal(std::string_view libpq_message);

/// For a first connection that failed with `what` (a broken_connection's text) to
/// `conninfo`: throws config_error when classify_connect_refusal recognises the cause (the
/// text, then "Hint: " and the fix), else transient_error (the text, then `transient_hint`
/// when given). Both start "cannot connect to the database (<conninfo>): ", every password
/// hidden.
[[noreturn]] void throw_connect_failure(std::string_view what, std::string_view conninfo,
                                        std::string_view transient_hint = {});

/// Sorts a database SQLSTATE (five characters). Sets `reconnect` when the session is unusable
/// (connection exceptions, admin shutdown, a read-only standby after a failover, ...).
failure_kind classify_sqlstate(std::string_view sqlstate, bool& reconnect);

/// Sorts an exception: libpqxx's types and SQLSTATEs, txbox's own errors, anything else.
/// Never throws.
failure classify(const std::exception_ptr& e) noexcept;

/// classify(std::current_exception()): call inside a catch block.
failure classify_current() noexcept;

/// "database transient", "database permanent", ... for log lines.
const char* kind_name(failure_kind kind) noexcept;

}  // namespace txbox::detail
