// A pqxx::work that notes when one of its exec() statements failed. libpqxx 6.4 then rolls the
// whole transaction back at once and closes it: later exec() calls throw usage_error, and
// later exec_params statements run outside any transaction (autocommitted). A handler that
// catches such an error and returns would otherwise go unnoticed until it is too late.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "txbox/detail/pq.hpp"

namespace txbox::inbox {

/// The error of a handler that returned after swallowing a database error (its message's
/// failure, retried and dead-lettered like any other).
inline constexpr const char* swallowed_error =
    "the handler returned but left the transaction aborted: it caught a database error and "
    "went on. A handler must let database errors propagate, or run the statement that may "
    "fail in a pqxx::subtransaction";

/// Releases `savepoint`; false when the transaction is aborted (25P02: a statement failed
/// since the savepoint and its error was swallowed).
[[nodiscard]] inline bool release_savepoint(pqxx::work& tx, const std::string& savepoint) {
  try {
    pq::exec0(tx, "RELEASE SAVEPOINT " + savepoint);
    return true;
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "25P02") return false;
    throw;
  }
}

#if TXBOX_PQXX7
/// libpqxx 7 leaves a transaction open when one of its statements fails: the server answers
/// the next statement with 25P02, which release() sees, so nothing needs watching.
/// Example: `watched_work tx(db, "txbox_inbox"); handler(tx.work(), m); if
/// (tx.statement_failed() || !tx.release("sp")) ...`. Rolls back on destruction unless
/// committed.
class watched_work {
 public:
  watched_work(pqxx::connection& db, const std::string& name) : m_work(db, name) {}

  [[nodiscard]] pqxx::work& work() { return m_work; }
  [[nodiscard]] bool statement_failed() const { return false; }
  [[nodiscard]] bool release(const std::string& savepoint) {
    return release_savepoint(m_work, savepoint);
  }
  void commit() { m_work.commit(); }

 private:
  pqxx::work m_work;
};
#else
/// Example: `watched_work tx(db, "txbox_inbox"); handler(tx.work(), m); if
/// (tx.statement_failed()) ...`. Rolls back on destruction unless committed.
class watched_work final : public pqxx::work {
 public:
  watched_work(pqxx::connection& db, const std::string& name)
      : pqxx::internal::namedclass("transaction", name), pqxx::work(db, name) {}
  watched_work(const watched_work&) = delete;
  watched_work& operator=(const watched_work&) = delete;
  ~watched_work() override = default;

  [[nodiscard]] pqxx::work& work() { return *this; }
  /// An exec() statement failed: the transaction is rolled back and closed.
  [[nodiscard]] bool statement_failed() const { return m_failed; }
  [[nodiscard]] bool release(const std::string& savepoint) {
    return !m_failed && release_savepoint(*this, savepoint);
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
#endif

}  // namespace txbox::inbox
