// One batch, one transaction. Handlers run without a savepoint each (two round trips per
// message saved); when one throws, the whole transaction rolls back and the batch runs again
// without the failed partition's tail. A handler that catches its own database error and
// returns leaves the transaction broken: after a failed exec() it is named at once
// (watched_work); after a failed exec_params the next statement fails with 25P02, and
// the batch runs again with a savepoint around each handler, which finds the culprit.
#include "batch_runner.hpp"

#include <set>

#include "handler_error.hpp"
#include "txbox/detail/pq.hpp"
#include "watched_work.hpp"

namespace txbox::inbox {
namespace {

using clock = std::chrono::steady_clock;

// A message of this batch and what to do with it.
struct item {
  ReceivedMessage msg;
  bool dead = false;  // handler failed max_attempts times: record in inbox_dead instead
  std::string dead_error{};
  int dead_attempts = 0;
};

// A handler's own failure inside the transaction (index into the items).
struct thrown {
  std::size_t index = 0;
  std::string error;
};

// The handler threw a database failure that is not its message's fault: a transient one, or a
// privilege or object missing (held until an operator fixes it).
struct database_in_handler {
  detail::failure db;
  std::string during;
};

// A statement failed with 25P02 (in_failed_sql_transaction) before any handler was checked:
// one of them left the transaction aborted; rerun the batch with a savepoint per handler.
struct aborted_by_a_handler {};

constexpr const char* k_aborted = "25P02";

// Where the handler failed, for the log line.
std::string during_handler(const ReceivedMessage& m) {
  return "running the handler of message " + m.id + " (" + tp_text({m.topic, m.partition}) +
         " offset " + std::to_string(m.offset) + "; not counted as a handler failure)";
}

// The database user the handler's statements run as.
std::string role_of(pqxx::connection& db) {
  const char* user = db.username();
  return user != nullptr ? user : "";
}

// The handler's error text, storable.
std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return storable_text(x.what());
  } catch (...) {
    return "handler threw a non-standard exception";
  }
}

struct attempt_result {
  std::optional<thrown> failure;
  bool lost_assignment = false;
  std::size_t processed = 0, duplicates = 0, dead = 0;
  std::map<TopicPartition, std::int64_t> next;
  std::vector<double> seconds;
};

attempt_result run_once(pqxx::connection& db, const inbox_store& store, const Handler& handler,
                        std::vector<item>& items,
                        const std::map<TopicPartition, std::int64_t>& excluded_from,
                        const std::function<bool()>& may_commit, bool savepoints) {
  attempt_result res;
  std::vector<item*> included;
  std::vector<const ReceivedMessage*> messages;
  for (auto& it : items) {
    const auto ex = excluded_from.find({it.msg.topic, it.msg.partition});
    if (ex == excluded_from.end() || it.msg.offset < ex->second) {
      included.push_back(&it);
      messages.push_back(&it.msg);
    }
  }
  watched_work tx(db, "txbox_inbox");
  const auto fresh = store.insert_new(tx.work(), messages);
  std::set<std::string> seen;
  for (item* it : included) {
    const TopicPartition tp{it->msg.topic, it->msg.partition};
    const bool is_new = fresh.contains(it->msg.id) && seen.insert(it->msg.id).second;
    if (!is_new) {
      ++res.duplicates;
    } else if (it->dead) {
      store.insert_dead(tx.work(), it->msg, it->dead_error, it->dead_attempts);
      ++res.dead;
    } else {
      const auto t0 = clock::now();
      if (savepoints) pq::exec0(tx.work(), "SAVEPOINT txbox_handler");
      try {
        handler(tx.work(), it->msg);
      } catch (...) {
        auto sorted = sort_handler_error(std::current_exception());
        // Without savepoints a 25P02 may be an earlier handler's doing: find out.
        if (!savepoints && detail::classify(std::current_exception()).sqlstate == k_aborted) {
          throw aborted_by_a_handler{};
        }
        if (sorted.verdict == handler_verdict::db_held) {
          sorted.db.hint = held_hint(sorted.db, role_of(db));
        }
        if (sorted.verdict != handler_verdict::message_failed) {
          throw database_in_handler{std::move(sorted.db), during_handler(it->msg)};
        }
        res.failure =
            thrown{static_cast<std::size_t>(it - items.data()), what_of(std::current_exception())};
        return res;  // tx rolls back
      }
      if (tx.statement_failed() || (savepoints && !tx.release("txbox_handler"))) {
        res.failure = thrown{static_cast<std::size_t>(it - items.data()), swallowed_error};
        return res;  // tx rolls back
      }
      res.seconds.push_back(std::chrono::duration<double>(clock::now() - t0).count());
      ++res.processed;
    }
    res.next[tp] = it->msg.offset + 1;
  }
  store.upsert_offsets(tx.work(), res.next);
  if (!may_commit()) {
    res.lost_assignment = true;
    return res;
  }
  tx.commit();
  return res;
}

}  // namespace

batch_result run_batch(pqxx::connection& db, const inbox_store& store, const Handler& handler,
                       std::vector<ReceivedMessage> messages,
                       const std::map<TopicPartition, prior_failure>& prior,
                       const batch_policy& policy, const std::function<bool()>& may_commit) {
  batch_result out;
  std::vector<item> items;
  items.reserve(messages.size());
  std::map<TopicPartition, prior_failure> known = prior;
  for (auto& m : messages) {
    const auto p = known.find({m.topic, m.partition});
    if (p != known.end() && p->second.offset == m.offset) m.attempt = p->second.attempts + 1;
    items.push_back(item{std::move(m)});
  }
  std::map<TopicPartition, std::int64_t> excluded_from;  // partition -> first offset held back
  bool savepoints = false;  // a handler left the transaction aborted: one savepoint each
  try {
    for (;;) {
      attempt_result res;
      try {
        res = run_once(db, store, handler, items, excluded_from, may_commit, savepoints);
      } catch (const aborted_by_a_handler&) {
        savepoints = true;
        continue;
      } catch (const pqxx::sql_error& e) {
        // txbox's own statement after a handler that swallowed its error (offsets, dead row).
        if (savepoints || e.sqlstate() != k_aborted) throw;
        savepoints = true;
        continue;
      }
      if (!res.failure) {
        out.outcome = res.lost_assignment ? batch_result::status::lost_assignment
                                          : batch_result::status::committed;
        out.processed = res.processed;
        out.duplicates = res.duplicates;
        out.dead = res.dead;
        out.next = std::move(res.next);
        out.handler_seconds = std::move(res.seconds);
        break;
      }
      item& bad = items[res.failure->index];
      const TopicPartition tp{bad.msg.topic, bad.msg.partition};
      auto& k = known[tp];
      if (k.offset != bad.msg.offset) k = prior_failure{bad.msg.offset, 0};
      ++k.attempts;
      handler_failure hf{tp, bad.msg.offset, bad.msg.id, k.attempts, res.failure->error, false};
      if (policy.on_failure == FailurePolicy::dead_letter && k.attempts >= policy.max_attempts) {
        bad.dead = true;
        bad.dead_error = res.failure->error;
        bad.dead_attempts = k.attempts;
        hf.dead = true;
      } else {
        excluded_from[tp] = bad.msg.offset;
      }
      out.failures.push_back(std::move(hf));
    }
  } catch (const database_in_handler& d) {
    out.outcome = batch_result::status::db_failed;
    out.db = d.db;
    out.db_during = d.during;
  } catch (...) {
    out.outcome = batch_result::status::db_failed;
    out.db = detail::classify_current();
  }
  if (out.outcome == batch_result::status::committed) out.retry_from = excluded_from;
  return out;
}

}  // namespace txbox::inbox
