// What a handler's exception means for its message. The handler's own failure is an attempt
// of that message (retried, then dead-lettered by policy); a database condition is not the
// message's fault: a transient one (deadlock, lost connection, ...) retries the batch, and a
// missing privilege or object holds it until an operator fixes the database.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "txbox/detail/failure.hpp"

namespace txbox::inbox {

enum class handler_verdict {
  message_failed,  ///< the handler's own failure: an attempt of this message
  db_transient,    ///< retry the batch with the short backoff, no attempt counted
  db_held,         ///< a privilege or object is missing: hold, long backoff, not ready
};

struct handler_error {
  handler_verdict verdict = handler_verdict::message_failed;
  detail::failure db;  ///< the database failure (db_transient, db_held), else unset
};

/// Sorts what a handler threw, looking through std::nested_exception (a handler that wraps
/// libpqxx's exception in its own with std::throw_with_nested). Never throws.
handler_error sort_handler_error(const std::exception_ptr& e) noexcept;

/// The SQLSTATEs that say the database lacks something the handler's statement needs, the
/// same for every message: 42501 (insufficient privilege), 42P01 (undefined table), 42703
/// (undefined column), 42883 (undefined function), 42704 (undefined object), 3F000 (invalid
/// schema name); and a connection the handler opens refused (28xxx authentication, 3D000 no
/// such database). Other permanent errors (a constraint, bad data) are the message's own.
bool needs_operator(std::string_view sqlstate);

/// The fix for a held failure, the handler's database user being `role`: "GRANT txbox_writer
/// TO role" for the outbox or txbox.enqueue, "GRANT the privilege ... ON object TO role" for
/// another object, the migrations for a missing one.
std::string held_hint(const detail::failure& f, std::string_view role);

/// `name` as an SQL identifier: as is when plain (lowercase letters, digits, _, $), else
/// double-quoted.
std::string sql_identifier(std::string_view name);

}  // namespace txbox::inbox
