// Retention (own thread, own connection) and requeue rounds.
#include "housekeeping.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>

#include "handler_error.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/backoff.hpp"
#include "txbox/detail/pq.hpp"
#include "watched_work.hpp"

namespace txbox::inbox {

using namespace std::chrono_literals;

retention_worker::retention_worker(settings s, inbox_store store)
    : m_s(std::move(s)), m_store(std::move(store)) {
  m_thread = std::jthread([this](const std::stop_token& stop) { loop(stop); });
}

retention_worker::~retention_worker() {
  m_thread.request_stop();
}

std::uint64_t retention_worker::round(pqxx::connection& db, const std::stop_token& stop) {
  std::uint64_t total = 0;
  for (int i = 0; i < 100 && !stop.stop_requested(); ++i) {
    const auto n = m_store.delete_expired(db, m_s.retention, m_s.batch);
    total += n;
    if (n < static_cast<std::uint64_t>(m_s.batch)) break;
  }
  return total;
}

void retention_worker::loop(const std::stop_token& stop) {
  std::unique_ptr<pqxx::connection> db;
  bool failing = false;
  auto wait = std::min<std::chrono::milliseconds>(m_s.interval, 10s);
  while (detail::sleep_for(wait, stop)) {
    wait = m_s.interval;
    try {
      if (!db) db = std::make_unique<pqxx::connection>(m_s.url);
      const auto removed = round(*db, stop);
      m_cleaned += removed;
      if (failing) spdlog::info("inbox {}: retention runs again", m_s.name);
      failing = false;
      if (removed > 0) {
        spdlog::info("inbox {}: retention removed {} inbox rows older than {} h", m_s.name, removed,
                     m_s.retention.count());
      }
    } catch (...) {
      const auto f = detail::classify_current();
      if (f.reconnect) db.reset();
      if (!failing) {
        spdlog::warn("inbox {}: retention failed ({}), retrying every {} ms: {}{}", m_s.name,
                     detail::kind_name(f.kind), m_s.interval.count(),
                     libpq_error_text(f.message, m_s.url),
                     f.hint.empty() ? "" : ". Hint: " + f.hint);
      }
      failing = true;
    }
  }
}

requeue_result requeue_round(pqxx::connection& db, const inbox_store& store, const Handler& handler,
                             int limit) {
  requeue_result out;
  std::optional<std::pair<std::int64_t, std::string>> alone;  // a failure the round lost
  {
    watched_work tx(db, "txbox_requeue");
    const auto rows = store.requeued(tx.work(), limit);
    if (rows.empty()) return out;
    for (const auto& row : rows) {
      pq::exec0(tx.work(), "SAVEPOINT txbox_requeue");
      std::optional<std::string> error;
      try {
        handler(tx.work(), row.message);
      } catch (...) {
        // Not the message's fault (a deadlock, a privilege missing): the round is retried.
        if (sort_handler_error(std::current_exception()).verdict !=
            handler_verdict::message_failed) {
          throw;
        }
        try {
          throw;
        } catch (const std::exception& e) {
          error = e.what();
        } catch (...) {
          error = "handler threw a non-standard exception";
        }
      }
      if (!error && tx.release("txbox_requeue")) {
        store.delete_dead(tx.work(), row.id);
        ++out.processed;
        continue;
      }
      if (!error) error = swallowed_error;
      if (tx.statement_failed()) {
        // libpqxx rolled the round's transaction back (a failed exec()): no savepoint to
        // return to. The failure is recorded alone; the rows before it run again next round.
        alone.emplace(row.id, *error);
        break;
      }
      pq::exec0(tx.work(), "ROLLBACK TO SAVEPOINT txbox_requeue");
      store.failed_again(tx.work(), row.id, *error);
      ++out.failed;
    }
    if (!alone) {
      tx.commit();
      return out;
    }
  }
  pqxx::work tx(db, "txbox_requeue");
  store.failed_again(tx, alone->first, alone->second);
  tx.commit();
  return requeue_result{0, 1};
}

}  // namespace txbox::inbox
