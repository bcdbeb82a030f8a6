// The consume loop, one round per poll_once: reconnect if due -> read the offsets of
// partitions that wait for them -> resume partitions whose retry backoff passed -> collect a
// batch -> run it in one transaction -> move the partitions on (or back) -> requeue dead
// messages -> lag. Offsets live in PostgreSQL; Kafka's are a mirror for lag tools.
//
// Failure policy (detail::classify): any database failure rolls the batch back, pauses every
// partition until its offset is read again from PostgreSQL (so the retry restarts from the
// last committed state: nothing lost, nothing applied twice) and backs off; the connection is
// replaced when the failure says so; a permanent one makes the consumer not ready and backs
// off long. A handler's own failure is counted and retried or dead-lettered by policy.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "batch_runner.hpp"
#include "database_link.hpp"
#include "handler_error.hpp"
#include "housekeeping.hpp"
#include "inbox_store.hpp"
#include "kafka_link.hpp"
#include "metrics.hpp"
#include "partition_tracker.hpp"
#include "record.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/detail/signal_guard.hpp"
#include "txbox/inbox.hpp"

namespace txbox {

using namespace std::chrono_literals;
using inbox::steady;
using inbox::TopicPartition;

namespace {

constexpr int k_requeue_limit = 100;  // dead messages per requeue round

std::string describe(const std::vector<TopicPartition>& tps) {
  std::vector<std::string> names;
  for (const auto& tp : tps) names.push_back(inbox::tp_text(tp));
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

struct Consumer::impl {
  ConsumerConfig cfg;
  Handler handler;
  inbox::inbox_store store;
  inbox::database_link db;
  inbox::partition_table table;
  inbox::stats_book stats;
  std::vector<ReceivedMessage> collected;  // this round's batch, in fetch order
  std::unique_ptr<inbox::kafka_link> kafka;
  std::unique_ptr<inbox::partition_driver> driver;
  std::unique_ptr<inbox::retention_worker> retention;
  std::mt19937_64 rng{std::random_device{}()};
  steady::time_point next_requeue{};
  bool failed_this_round = false;
  bool requeue_failing = false;  // logged once until a round succeeds

  impl(ConsumerConfig c, Handler h)
      : cfg((validate_consumer_config(c), std::move(c))),
        handler(std::move(h)),
        store(detail::schema_name(cfg.schema), cfg.name),
        db(inbox::database_link::settings{cfg.name, cfg.database_url, cfg.schema,
                                          cfg.retry_backoff_min, cfg.retry_backoff_max}),
        table(cfg.start_from_earliest) {
    if (!handler) throw config_error("txbox::Consumer needs a handler");
    db.connect_now();
    kafka = std::make_unique<inbox::kafka_link>(
        cfg, [this](rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) {
          on_rebalance(err, list);
        });
    driver = std::make_unique<inbox::partition_driver>(kafka->get(), cfg.name);
    retention = std::make_unique<inbox::retention_worker>(
        inbox::retention_worker::settings{cfg.name, cfg.database_url, cfg.retention,
                                          cfg.cleanup_interval, cfg.cleanup_batch},
        store);
    update_ready();
  }

  ~impl() { close(); }
  void close() { kafka->close(); }  // revokes the partitions: on_rebalance runs once more

  // ---- the round ----
  std::size_t poll_once(std::chrono::milliseconds timeout) {
    kafka->throw_if_fatal();
    failed_this_round = false;
    kafka->probe();
    db.maintain(steady::now());
    recover_offsets();
    driver->apply(table.due(steady::now()));
    collect(db.usable(steady::now()) ? timeout : std::min(timeout, 100ms));
    const std::size_t handled = process();
    requeue();
    if (!failed_this_round && db.usable(steady::now()) && table.unknown().empty()) {
      db.quiet_round(steady::now());
    }
    stats.set_lag(kafka->lag(table.partitions()));
    update_ready();
    return handled;
  }

  // Every database failure ends here: the partitions wait for their stored offsets.
  void database_failed(const detail::failure& f, const char* what) {
    failed_this_round = true;
    db.failed(f, what);
    driver->apply(table.offsets_lost());
    collected.clear();
    update_ready();
  }

  void update_ready() { stats.set_ready(db.ready() && !kafka->down()); }

  // Partitions assigned or rolled back while the database could not be used: read their
  // offsets and seek there.
  void recover_offsets() {
    if (table.unknown().empty() || !db.usable(steady::now())) return;
    try {
      const auto stored = store.load_offsets(db.conn());
      const auto a = table.offsets_loaded(stored, steady::now());
      driver->apply(a);
      store_positions(a.store, "storing the start positions");
    } catch (...) {
      database_failed(detail::classify_current(), "reading the stored offsets");
    }
  }

  // Start positions known only in memory (a latest partition's end read at assignment) go to
  // inbox_offsets, so a rebalance or a restart before the first commit does not lose them.
  void store_positions(const std::map<TopicPartition, std::int64_t>& positions, const char* what) {
    if (positions.empty() || !db.usable(steady::now())) return;
    try {
      pqxx::work tx(db.conn(), "txbox_inbox_start");
      store.upsert_offsets(tx, positions);
      tx.commit();
    } catch (...) {
      database_failed(detail::classify_current(), what);
    }
  }

  void collect(std::chrono::milliseconds timeout) {
    accept(kafka->poll(timeout));
    if (collected.empty()) return;
    const auto fill_until = steady::now() + cfg.batch_wait;
    while (collected.size() < static_cast<std::size_t>(cfg.max_batch)) {
      auto m = kafka->poll(
          std::chrono::duration_cast<std::chrono::milliseconds>(fill_until - steady::now()));
      if (!m) break;
      accept(std::move(m));
    }
  }

  void accept(detail::message_ptr m) {
    if (!m) return;
    if (!table.accepts({rd_kafka_topic_name(m->rkt), m->partition}, m->offset)) return;
    collected.push_back(inbox::decode_record(*m));
  }

  std::size_t process() {
    if (collected.empty()) return 0;
    std::vector<ReceivedMessage> batch = std::move(collected);
    collected.clear();
    std::map<TopicPartition, inbox::prior_failure> prior;
    for (const auto& m : batch) {
      if (const auto p = table.prior({m.topic, m.partition})) prior[{m.topic, m.partition}] = *p;
    }
    const auto r = inbox::run_batch(db.conn(), store, handler, std::move(batch), prior,
                                    {cfg.max_attempts, cfg.on_failure},
                                    [this] { return !kafka->assignment_lost(); });
    stats.batch(r);
    for (const auto& f : r.failures) {
      // The backoff starts now, whatever happens to the batch (a database failure after the
      // handler's rolls it back: the message must not run again at once).
      const auto at = f.dead ? steady::time_point{}
                             : steady::now() + inbox::retry_delay(f.attempts, cfg.retry_backoff_min,
                                                                  cfg.retry_backoff_max, rng);
      table.failed(f.tp, f.offset, f.attempts, at);
    }
    switch (r.outcome) {
      case inbox::batch_result::status::db_failed:
        stats.database_retry();
        database_failed(*r.db, r.db_during.c_str());
        return 0;
      case inbox::batch_result::status::lost_assignment:
        spdlog::warn(
            "inbox {}: assignment lost during a batch; rolled back, the new owner processes it",
            cfg.name);
        return 0;
      case inbox::batch_result::status::committed:
        break;
    }
    committed(r);
    return r.processed + r.duplicates + r.dead;
  }

  // Partitions move on; failed ones fetch again from the failed message after a backoff.
  void committed(const inbox::batch_result& r) {
    db.succeeded();
    driver->apply(table.committed(r.next));
    for (const auto& f : r.failures) {
      if (f.dead) {
        spdlog::warn("inbox {}: message {} ({} offset {}) failed {} times, moved to inbox_dead: {}",
                     cfg.name, f.id, inbox::tp_text(f.tp), f.offset, f.attempts, f.error);
      }
    }
    for (const auto& retry : r.retry_from) {
      const TopicPartition& tp = retry.first;
      const std::int64_t offset = retry.second;
      const auto last = std::find_if(r.failures.rbegin(), r.failures.rend(),
                                     [&](const auto& f) { return f.tp == tp; });
      const int attempts = last != r.failures.rend() ? last->attempts : 1;
      const auto at = steady::now() + inbox::retry_delay(attempts, cfg.retry_backoff_min,
                                                         cfg.retry_backoff_max, rng);
      driver->apply(table.retry_later(tp, offset, at, attempts >= cfg.max_attempts,
                                      last != r.failures.rend() ? last->error : ""));
    }
    kafka->mirror(r.next);
  }

  // Requeued dead messages: the user's handler on this thread (never concurrently with a
  // batch), a bounded round per requeue_interval.
  void requeue() {
    const auto now = steady::now();
    if (now < next_requeue || !db.usable(now)) return;
    next_requeue = now + cfg.requeue_interval;
    try {
      const auto r = inbox::requeue_round(db.conn(), store, handler, k_requeue_limit);
      if (r.processed + r.failed > 0) {
        spdlog::info("inbox {}: requeued dead messages: {} processed, {} failed again", cfg.name,
                     r.processed, r.failed);
      }
      stats.requeue(r);
      if (requeue_failing) spdlog::info("inbox {}: requeue of dead messages runs again", cfg.name);
      requeue_failing = false;
    } catch (...) {
      // Rolled back; the partitions are not concerned unless the connection must go.
      const auto f = requeue_failure(std::current_exception());
      if (f.reconnect) {
        database_failed(f, "requeueing dead messages");
      } else if (!requeue_failing) {
        requeue_failing = true;
        spdlog::warn("inbox {}: requeue of dead messages failed ({}), retrying every {} ms: {}{}",
                     cfg.name, detail::kind_name(f.kind), cfg.requeue_interval.count(), f.message,
                     f.hint.empty() ? "" : ". Hint: " + f.hint);
      }
    }
  }

  // What a failed requeue round tells: the database failure the handler threw (a privilege
  // it lacks names its fix), or the failure of txbox's own statements.
  detail::failure requeue_failure(const std::exception_ptr& e) {
    auto sorted = inbox::sort_handler_error(e);
    if (sorted.verdict == inbox::handler_verdict::message_failed) return detail::classify(e);
    if (sorted.verdict == inbox::handler_verdict::db_held) {
      const char* user = db.connected() ? db.conn().username() : nullptr;
      sorted.db.hint = inbox::held_hint(sorted.db, user != nullptr ? user : "the consumer's user");
    }
    return sorted.db;
  }

  // Runs inside kafka->poll() (never during a batch's transaction), so there is no
  // transaction to roll back: messages already collected for revoked partitions are dropped
  // before any of them reach the database. Never throws (librdkafka's callback).
  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) noexcept {
    try {
      stats.rebalance();
      std::vector<TopicPartition> tps;
      for (int i = 0; i < list->cnt; ++i) {
        tps.push_back({list->elems[i].topic, list->elems[i].partition});
      }
      if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assigned(list, tps);
      } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
          spdlog::warn("inbox {}: rebalance error: {}", cfg.name, rd_kafka_err2str(err));
        }
        std::erase_if(collected, [&](const ReceivedMessage& m) {
          return std::find(tps.begin(), tps.end(), TopicPartition{m.topic, m.partition}) !=
                 tps.end();
        });
        const auto a = table.revoked(tps);
        driver->apply(a);
        driver->rebalance(list, false, a);
        spdlog::info("inbox {}: revoked {} partition(s): {}", cfg.name, tps.size(), describe(tps));
      }
    } catch (...) {
      spdlog::error("inbox {}: rebalance handling failed: {}", cfg.name,
                    detail::classify_current().message);
    }
  }

  void assigned(rd_kafka_topic_partition_list_t* list, const std::vector<TopicPartition>& tps) {
    std::optional<std::map<TopicPartition, std::int64_t>> stored;
    if (db.usable(steady::now())) {
      try {
        stored = store.load_offsets(db.conn());
      } catch (...) {
        // Left paused with their offsets unknown; recover_offsets reads them later.
        database_failed(detail::classify_current(), "reading the stored offsets at assignment");
      }
    }
    // start_from latest: the end now, for the partitions without a stored offset (or all of
    // them when the offsets could not be read); they start there whatever fails next.
    std::map<TopicPartition, std::int64_t> ends;
    if (!cfg.start_from_earliest) {
      std::vector<TopicPartition> open;
      for (const auto& tp : tps) {
        if (!stored || !stored->contains(tp)) open.push_back(tp);
      }
      ends = kafka->ends(open);
    }
    const auto a = table.assigned(tps, stored, ends);
    driver->rebalance(list, true, a);
    driver->apply(a);
    store_positions(a.store, "storing the start positions at assignment");
    spdlog::info("inbox {}: assigned {} partition(s): {}", cfg.name, tps.size(), describe(tps));
  }
};

Consumer::Consumer(ConsumerConfig config, Handler handler)
    : m_impl(std::make_unique<impl>(std::move(config), std::move(handler))) {}

Consumer::~Consumer() = default;

void Consumer::run(std::stop_token stop) {
  spdlog::info("inbox {}: consuming {}", m_impl->cfg.name, fmt::join(m_impl->cfg.topics, ", "));
  while (!stop.stop_requested()) m_impl->poll_once(200ms);
  m_impl->close();
  spdlog::info("inbox {}: stopped", m_impl->cfg.name);
}

void Consumer::run() {
  detail::signal_guard guard;  // restores the previous handlers however run() ends
  std::stop_source source;
  guard.forward_to(source);
  run(source.get_token());
}

std::size_t Consumer::poll_once(std::chrono::milliseconds timeout) {
  return m_impl->poll_once(timeout);
}

std::string Consumer::metrics_text() const {
  return inbox::metrics_text(stats(), m_impl->cfg.name);
}

ConsumerStats Consumer::stats() const {
  return m_impl->stats.snapshot(m_impl->retention ? m_impl->retention->cleaned() : 0);
}

}  // namespace txbox
