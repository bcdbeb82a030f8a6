// Housekeeping on its own schedule. Retention runs on a thread of its own with a connection of
// its own, so a slow DELETE never stalls the poll loop. Requeued dead messages run the user's
// handler, which users do not expect to run concurrently with the consume loop: they are
// processed by poll_once on the consumer's connection, a bounded round at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "inbox_store.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox::inbox {

/// Deletes inbox rows older than the retention every `interval`, in short DELETEs of `batch`
/// rows (at most 100 per round). The first round runs after min(interval, 10 s).
class retention_worker {
 public:
  struct settings {
    std::string name;  ///< the inbox, for log lines
    std::string url;
    std::chrono::hours retention{24 * 7};
    std::chrono::milliseconds interval{600'000};
    int batch = 5000;
  };
  retention_worker(settings s, inbox_store store);
  ~retention_worker();  // stops the thread (a DELETE in flight finishes first)
  retention_worker(const retention_worker&) = delete;
  retention_worker& operator=(const retention_worker&) = delete;

  /// Rows removed so far (thread-safe).
  [[nodiscard]] std::uint64_t cleaned() const { return m_cleaned.load(); }

 private:
  void loop(const std::stop_token& stop);
  std::uint64_t round(pqxx::connection& db, const std::stop_token& stop);
  settings m_s;
  inbox_store m_store;
  std::atomic<std::uint64_t> m_cleaned{0};
  std::jthread m_thread;
};

/// What a requeue round did.
struct requeue_result {
  std::size_t processed = 0;  ///< handler succeeded: dead row deleted
  std::size_t failed = 0;     ///< handler failed again: row unmarked with the new error
};

/// Runs the handler on up to `limit` dead messages marked for requeue, in one transaction
/// with a savepoint per message. A handler failure is stored (as storable text) on the row;
/// a database failure (in txbox's statements, or one thrown by the handler that is not the
/// message's fault: transient, or a privilege or object missing, see sort_handler_error)
/// rolls the round back and is thrown to the caller, which classifies it. A handler whose
/// exec() failed (libpqxx then rolls the whole transaction back), or that returned after
/// swallowing a database error, fails its message: when the round's transaction is lost, that
/// failure alone is stored, in a transaction of its own, and the round ends there.
requeue_result requeue_round(pqxx::connection& db, const inbox_store& store, const Handler& handler,
                             int limit);

}  // namespace txbox::inbox
