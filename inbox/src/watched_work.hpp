// A pqxx::work that notes when one of its exec() statements failed. libpqxx 6.4 then rolls the
// whole transaction back at once and closes it: later exec() calls throw usage_error, and
// later exec_params statements run outside any transaction (autocommitted). A handler that
// catches such an error and returns would otherwise go unnoticed until it is too late.
#pragma once

#include <pqxx/pqxx>
#include <string>

namespace txbox::inbox {

/// The error of a handler that returned after swallowing a database error (its message's
/// failure, retried and dead-lettered like any other).
inline constexpr const char* swallowed_error =
    "the handler returned but left the transaction aborted: it caught a database error and "
    "went on. A handler must let database errors propagate, or run the statement that may "
    "fail in a pqxx::subtransaction";

/// Example: `watched_work tx(db, "txbox_inbox"); handler(tx, m); if (tx.statement_failed())
/// ...` (the handler gets a pqxx::work&). Rolls back on destruction unless committed.
class watched_work final : public pqxx::work {
 public:
  watched_work(pqxx::connection& db, const std::string& name)
      : pqxx::internal::namedclass("transaction", name), pqxx::work(db, name) {}
  watched_work(const watched_work&) = delete;
  watched_work& operator=(const watched_work&) = delete;
  ~watched_work() override = default;

  /// An exec() statement failed: the transaction is rolled back and closed.
  [[nodiscard]] bool statement_failed() const { return m_failed; }

  /// Releases `savepoint`; false when the transaction is aborted (25P02: a statement failed
  /// since the savepoint and its error was swallowed) or already closed by a failed exec().
  [[nodiscard]] bool release(const std::string& savepoint) {
    if (m_failed) return false;
    try {
      exec0("RELEASE SAVEPOINT " + savepoint);
      return true;
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() == "25P02") return false;
      throw;
    }
  }

 private:
  pqxx::result do_exec(const char query[]) override {
    try {
      return pqxx::work::do_exec(query);
    } catch (...) {
      m_failed = true;
      throw;
    }
  }
  bool m_failed = false;
};

}  // namespace txbox::inbox
