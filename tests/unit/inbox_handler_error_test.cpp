// What a handler's exception means for its message (issue 30): a missing privilege or object
// holds the batch with the fix to print, a transient error retries it, anything else is the
// message's own failure.
#include <gtest/gtest.h>

#include <pqxx/except>
#include <stdexcept>

#include "handler_error.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/error.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::inbox::handler_verdict;
using txbox::inbox::held_hint;
using txbox::inbox::sort_handler_error;

template <class E>
handler_verdict verdict_of(const E& e) {
  return sort_handler_error(std::make_exception_ptr(e)).verdict;
}

TEST(InboxHandlerError, MissingPrivilegeOrObjectIsHeld) {
  EXPECT_EQ(verdict_of(pqxx::insufficient_privilege("ERROR:  permission denied for table t\n")),
            handler_verdict::db_held);
  EXPECT_EQ(verdict_of(pqxx::undefined_table("ERROR:  relation \"t\" does not exist\n")),
            handler_verdict::db_held);
  EXPECT_EQ(verdict_of(pqxx::undefined_column("ERROR:  column \"c\" does not exist\n")),
            handler_verdict::db_held);
  EXPECT_EQ(verdict_of(pqxx::undefined_function("ERROR:  function f() does not exist\n")),
            handler_verdict::db_held);
  EXPECT_EQ(verdict_of(pqxx::sql_error("ERROR:  schema \"s\" does not exist", "", "3F000")),
            handler_verdict::db_held);
  // Outbox::enqueue's error for a missing outbox table.
  EXPECT_EQ(verdict_of(txbox::schema_error("table x.outbox does not exist")),
            handler_verdict::db_held);
}

TEST(InboxHandlerError, TransientIsRetriedNotCounted) {
  EXPECT_EQ(verdict_of(pq::sql_error_of<pqxx::deadlock_detected>("deadlock detected", "40P01")),
            handler_verdict::db_transient);
  EXPECT_EQ(
      verdict_of(pq::sql_error_of<pqxx::serialization_failure>("could not serialize", "40001")),
      handler_verdict::db_transient);
  EXPECT_EQ(verdict_of(pqxx::broken_connection("server closed the connection")),
            handler_verdict::db_transient);
}

// A constraint, bad data, a syntax error in one statement, the handler's own exception: the
// message's failure (retried, then dead-lettered).
TEST(InboxHandlerError, OtherErrorsAreTheMessagesOwn) {
  EXPECT_EQ(verdict_of(pqxx::unique_violation("duplicate key")), handler_verdict::message_failed);
  EXPECT_EQ(verdict_of(pqxx::check_violation("violates check")), handler_verdict::message_failed);
  EXPECT_EQ(verdict_of(pqxx::data_exception("invalid input syntax")),
            handler_verdict::message_failed);
  EXPECT_EQ(verdict_of(pqxx::sql_error("ERROR:  raise", "", "P0001")),
            handler_verdict::message_failed);
  EXPECT_EQ(verdict_of(std::runtime_error("bad payload")), handler_verdict::message_failed);
  EXPECT_EQ(sort_handler_error(std::make_exception_ptr(42)).verdict,
            handler_verdict::message_failed);
}

// A handler that wraps libpqxx's exception in its own (std::throw_with_nested).
TEST(InboxHandlerError, LooksThroughNestedExceptions) {
  std::exception_ptr held, transient;
  try {
    try {
      throw pqxx::insufficient_privilege("ERROR:  permission denied for table outbox\n");
    } catch (...) {
      std::throw_with_nested(std::runtime_error("projecting order 42"));
    }
  } catch (...) {
    held = std::current_exception();
  }
  try {
    try {
      throw pq::sql_error_of<pqxx::deadlock_detected>("deadlock detected", "40P01");
    } catch (...) {
      std::throw_with_nested(std::runtime_error("projecting order 43"));
    }
  } catch (...) {
    transient = std::current_exception();
  }
  const auto h = sort_handler_error(held);
  EXPECT_EQ(h.verdict, handler_verdict::db_held);
  EXPECT_EQ(h.db.sqlstate, "42501");
  EXPECT_EQ(sort_handler_error(transient).verdict, handler_verdict::db_transient);
}

std::string hint_for(const std::string& sqlstate, const std::string& message,
                     const std::string& role = "projector") {
  txbox::detail::failure f;
  f.kind = txbox::detail::failure_kind::db_permanent;
  f.sqlstate = sqlstate;
  f.message = message;
  return held_hint(f, role);
}

TEST(InboxHandlerError, HintNamesTheGrant) {
  EXPECT_EQ(hint_for("42501", "ERROR:  permission denied for table outbox").substr(0, 32),
            "GRANT txbox_writer TO projector ");
  EXPECT_EQ(
      hint_for("42501", "ERROR:  permission denied for function enqueue CONTEXT: x").substr(0, 32),
      "GRANT txbox_writer TO projector ");
  EXPECT_NE(hint_for("42501", "ERROR:  permission denied for table order_view")
                .find("ON order_view TO projector"),
            std::string::npos);
  EXPECT_NE(hint_for("42501", "ERROR:  permission denied for materialized view totals")
                .find("ON totals TO projector"),
            std::string::npos);
  EXPECT_EQ(hint_for("42501", "ERROR:  permission denied for schema billing"),
            "GRANT USAGE ON SCHEMA billing TO projector");
  EXPECT_EQ(hint_for("42501", "ERROR:  permission denied for sequence ids"),
            "GRANT USAGE ON SEQUENCE ids TO projector");
  EXPECT_EQ(hint_for("42501", "ERROR:  permission denied for function f"),
            "GRANT EXECUTE ON FUNCTION f TO projector");
  // Names that need quoting are quoted.
  EXPECT_EQ(hint_for("42501", "ERROR:  permission denied for schema Billing", "Order Svc"),
            "GRANT USAGE ON SCHEMA \"Billing\" TO \"Order Svc\"");
  EXPECT_NE(hint_for("42501", "ERROR:  permission denied for column \"c\" of relation \"t\"")
                .find("projector"),
            std::string::npos);
  EXPECT_NE(hint_for("42P01", "ERROR:  relation \"t\" does not exist").find("migrations"),
            std::string::npos);
}

}  // namespace
