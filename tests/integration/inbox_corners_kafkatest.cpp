// The inbox's corners found by the review of issue 25, end to end on the real broker and
// database: a start_from latest consumer whose first batches fail keeps its first position; a
// handler that swallows its own SQL error is the one retried and dead-lettered while the
// other messages flow; a handler failure followed by a database failure in the same batch
// still backs off.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "inbox_support.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::IdRecord;
using txbox::test::InboxFixture;
using txbox::test::numbered_ids;
using txbox::test::produce_ids;

class InboxCorners : public InboxFixture {
 protected:
  // Polls for `d` whatever happens (the partitions get assigned, positions resolved).
  static void poll_for(txbox::Consumer& c, std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    poll_until(c, [&] { return std::chrono::steady_clock::now() > until; });
  }
  void swallowing_handler_is_found(bool with_params);
};

// Issue 25, defect 1: with start_from latest and no stored offset, the first batch rolled back
// by a database error (here lock_timeout: another session locks inbox_offsets) sought to the
// end again, so every message that arrived meanwhile was skipped: 0 of 100 applied, silently.
TEST_F(InboxCorners, LatestConsumerAppliesEveryMessageThatArrivedWhileItsOffsetsWereLocked) {
  constexpr int total = 100;
  produce_ids(topic_, {{"before0", "old", 0}, {"before1", "old", 1}});  // before it started
  auto cfg = config();
  cfg.start_from_earliest = false;
  cfg.database_url = url(false, "options='-c lock_timeout=100'");
  txbox::Consumer c(cfg, record_effect());
  ASSERT_TRUE(poll_until(
      c, [&] { return c.stats().rebalances >= 1; }, 30s));
  poll_for(c, 2s);  // the fetchers reach the end
  {
    pqxx::connection holder(endpoints().pg);
    pqxx::work tx(holder);
    tx.exec("LOCK TABLE " + schema_ + ".inbox_offsets IN EXCLUSIVE MODE");
    produce_ids(topic_, numbered_ids(total, 2));
    poll_for(c, 1500ms);
    EXPECT_EQ(effects(), 0) << "the offsets table was locked";
    EXPECT_GE(c.stats().database_retries, 1u) << "no batch ran while the table was locked";
  }  // rolled back: the lock goes
  EXPECT_TRUE(poll_until(
      c, [&] { return distinct_effects() >= total; }, 30s))
      << distinct_effects() << " of " << total << " applied";
  poll_for(c, 300ms);
  EXPECT_EQ(distinct_effects(), total);
  EXPECT_EQ(effects(), total);
  EXPECT_EQ(dead(), 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects WHERE message_id LIKE 'before%'"),
            0)
      << "latest: what was there before the consumer started is not consumed";
}

// The same with the offsets unreadable at assignment (privilege taken away, then given back):
// the partitions wait paused, and start at the end read when they were assigned.
TEST_F(InboxCorners, LatestConsumerWhoseOffsetsAreUnreadableAtAssignmentKeepsWhatArrives) {
  constexpr int total = 20;
  sql("REVOKE SELECT ON " + schema_ + ".inbox_offsets FROM txbox_consumer");
  auto cfg = config();
  cfg.start_from_earliest = false;
  cfg.database_url = url(true);
  txbox::Consumer c(cfg, record_effect());
  ASSERT_TRUE(poll_until(
      c, [&] { return c.stats().rebalances >= 1; }, 30s));
  poll_for(c, 1s);
  produce_ids(topic_, numbered_ids(total, 2));
  poll_for(c, 1s);
  EXPECT_EQ(effects(), 0);
  sql("GRANT SELECT ON " + schema_ + ".inbox_offsets TO txbox_consumer");
  EXPECT_TRUE(poll_until(
      c, [&] { return distinct_effects() >= total; }, 60s))
      << distinct_effects() << " of " << total << " applied";
  EXPECT_EQ(effects(), total);
  EXPECT_EQ(dead(), 0);
}

// Issue 25, defect 2: a handler that catches its own SQL error and returns. With tx.exec,
// libpqxx has already rolled the whole transaction back: the next handlers' exec_params and
// txbox's offsets ran outside any transaction, then the commit failed ("bug error") and the
// batch looped, not ready. With tx.exec_params the transaction stays aborted (25P02): the
// next handler was blamed, then the offsets' upsert failed and the batch looped the same way.
// Now the culprit is found (at once, or by a rerun with a savepoint per handler), retried and
// dead-lettered by policy; every other message is applied once, on both partitions.
void InboxCorners::swallowing_handler_is_found(bool with_params) {
  constexpr int total = 20;
  auto cfg = config();
  cfg.max_attempts = 3;
  cfg.batch_wait = 200ms;  // the culprit shares its batches with innocent messages
  const std::string table = schema_ + ".effects";
  txbox::Consumer c(cfg, [table, with_params](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    if (m.id == "m5") {
      try {
        if (with_params) {
          pq::exec(tx, "SELECT 1 / $1", 0);
        } else {
          tx.exec("SELECT 1 / 0");
        }
      } catch (const pqxx::sql_error&) {
        // swallowed: what a handler must not do
      }
      return;
    }
    pq::exec(tx,
             "INSERT INTO " + table +
                 " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
             m.id, m.topic, m.partition, m.offset);
  });
  produce_ids(topic_, numbered_ids(total, 2));
  EXPECT_TRUE(poll_until(
      c, [&] { return distinct_effects() >= total - 1 && dead() >= 1; }, 30s))
      << distinct_effects() << " applied, " << dead() << " dead";
  poll_for(c, 500ms);
  EXPECT_EQ(distinct_effects(), total - 1);
  EXPECT_EQ(effects(), total - 1) << "a write ran outside the batch's transaction";
  EXPECT_EQ(dead(), 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".inbox_dead WHERE message_id = 'm5'"), 1)
      << "an innocent message was dead-lettered";
  EXPECT_EQ(c.stats().failures, 3u) << "only the culprit's attempts count";
  EXPECT_TRUE(c.stats().ready);
  produce_ids(topic_, {{"after", "z", 1}});
  EXPECT_TRUE(poll_until(
      c, [&] { return distinct_effects() >= total; }, 20s))
      << "the consumer goes on after the culprit";
}

TEST_F(InboxCorners, HandlerThatSwallowsItsSqlErrorIsTheOneRetriedThenDeadLettered) {
  swallowing_handler_is_found(false);
}

TEST_F(InboxCorners, HandlerThatSwallowsItsExecParamsErrorIsTheOneRetriedThenDeadLettered) {
  swallowing_handler_is_found(true);
}

// Issue 25, minor: a handler failure followed, in the same batch, by a database failure rolled
// the batch back without the retry's backoff: the failed message ran again at once. Here m0
// fails four times; at its fourth run the handler also kills its session, so the batch's rerun
// fails on a broken connection. The fifth run must wait the backoff of a fourth failure
// (retry_backoff_min·2³ with jitter: 0.8-1.6 s), not the database's short one.
TEST_F(InboxCorners, HandlerFailureFollowedByADatabaseFailureStillBacksOff) {
  auto cfg = config();
  cfg.max_attempts = 10;
  cfg.retry_backoff_min = 200ms;
  cfg.retry_backoff_max = 5s;
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> runs;
  const std::string table = schema_ + ".effects";
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    std::size_t run = 0;
    {
      std::lock_guard lock(mu);
      runs.push_back(std::chrono::steady_clock::now());
      run = runs.size();
    }
    if (run == 4) {
      pqxx::connection killer(endpoints().pg);
      pq::exec(pqxx::nontransaction(killer), "SELECT pg_terminate_backend($1)",
               tx.conn().backendpid());
    }
    if (run <= 4) throw std::runtime_error("m0 fails, run " + std::to_string(run));
    pq::exec(tx,
             "INSERT INTO " + table +
                 " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
             m.id, m.topic, m.partition, m.offset);
  });
  produce_ids(topic_, {{"m0", "a", 0}});
  ASSERT_TRUE(poll_until(
      c, [&] { return effects() >= 1; }, 60s));
  std::lock_guard lock(mu);
  ASSERT_EQ(runs.size(), 5u);
  const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(runs[4] - runs[3]);
  EXPECT_GE(gap, 700ms) << "the fifth run came " << gap.count()
                        << " ms after the fourth failure: no handler-retry backoff";
  EXPECT_GE(c.stats().database_retries, 1u);
  EXPECT_EQ(c.stats().failures, 4u);
}

// Found with defect 2: a requeued dead message whose handler fails in tx.exec (libpqxx 6.4
// then rolls the round's whole transaction back) made "ROLLBACK TO SAVEPOINT" fail: the requeue
// round failed again every requeue_interval, and no requeued message was ever processed or
// recorded again. Now the failure is recorded in a transaction of its own and the others go on.
TEST_F(InboxCorners, RequeuedMessageWhoseHandlerFailsInTxExecIsRecordedAndTheOthersGoOn) {
  auto cfg = config();
  cfg.max_attempts = 1;
  cfg.requeue_interval = 200ms;
  const std::string table = schema_ + ".effects";
  std::atomic<bool> m1_failed = false;
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    if (m.id == "m0") tx.exec("SELECT 1 / 0");  // fails every time, in exec()
    if (m.id == "m1" && !m1_failed.exchange(true)) throw std::runtime_error("m1 fails once");
    pq::exec(tx,
             "INSERT INTO " + table +
                 " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
             m.id, m.topic, m.partition, m.offset);
  });
  produce_ids(topic_, {{"m0", "a", 0}, {"m1", "b", 0}});
  ASSERT_TRUE(poll_until(
      c, [&] { return dead() >= 2; }, 30s));
  sql("UPDATE " + schema_ + ".inbox_dead SET requeued_at = now()");
  const auto m0_attempts = [&] {
    return scalar("SELECT coalesce(max(attempts), 0) FROM " + schema_ +
                  ".inbox_dead WHERE message_id = 'm0' AND requeued_at IS NULL");
  };
  EXPECT_TRUE(poll_until(
      c, [&] { return effects() >= 1 && m0_attempts() >= 2; }, 20s))
      << effects() << " effects, m0's attempts " << m0_attempts();
  EXPECT_EQ(scalar("SELECT count(*) FROM " + table + " WHERE message_id = 'm1'"), 1)
      << "m1, requeued after m0, was never processed";
  EXPECT_EQ(dead(), 1) << "only m0 stays dead";
  EXPECT_EQ(m0_attempts(), 2) << "m0's failure is recorded once, unmarked";
  EXPECT_TRUE(c.stats().ready) << "a requeued message's failure stopped the consumer";
}

}  // namespace
