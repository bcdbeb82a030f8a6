// The inbox under database failures in its own statements and in the handler: lock and
// statement timeouts, serialization failures, a read-only session after a failover, admin
// shutdown, privileges taken away during a rebalance, a requeue whose error is not UTF-8.
// Each time the consumer keeps running, dead-letters nothing good, applies each message once.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <pqxx/pqxx>
#include <thread>

#include "inbox_support.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::InboxFixture;
using txbox::test::numbered_ids;
using txbox::test::produce_ids;

class InboxFailures : public InboxFixture {
 protected:
  // Another session holds locks the consumer's own statements need (the offsets row, then an
  // uncommitted inbox row of a message it is about to take) for ~1.5 s each, with `options`
  // making the consumer's waits fail (lock_timeout, statement_timeout).
  void own_statements_wait_on_locks(const std::string& options) {
    auto cfg = config();
    cfg.database_url = url(false, "options='" + options + "'");
    txbox::Consumer c(cfg, record_effect());
    produce_ids(topic_, {{"m0", "a", 0}});
    ASSERT_TRUE(poll_until(c, [&] { return effects() >= 1; }));
    {
      pqxx::connection holder(endpoints().pg);
      pqxx::work tx(holder);
      tx.exec("SELECT * FROM " + schema_ + ".inbox_offsets FOR UPDATE");
      produce_ids(topic_, {{"m1", "b", 0}, {"m2", "c", 0}});
      const auto until = std::chrono::steady_clock::now() + 1500ms;
      poll_until(c, [&] { return std::chrono::steady_clock::now() > until; });
      EXPECT_EQ(effects(), 1) << "the offsets row was locked";
    }
    ASSERT_TRUE(poll_until(c, [&] { return effects() >= 3; }));
    {
      pqxx::connection holder(endpoints().pg);
      pqxx::work tx(holder);
      pq::exec(tx,
               "INSERT INTO " + schema_ +
                   ".inbox (consumer, message_id, topic, \"partition\", \"offset\") "
                   "VALUES ($1, 'm3', $2, 0, 3)",
               cfg.name, topic_);
      produce_ids(topic_, {{"m3", "d", 0}, {"m4", "e", 0}});
      const auto until = std::chrono::steady_clock::now() + 1500ms;
      poll_until(c, [&] { return std::chrono::steady_clock::now() > until; });
      EXPECT_EQ(effects(), 3) << "m3's inbox row was locked";
    }  // rolled back: m3 is new after all
    ASSERT_TRUE(poll_until(c, [&] { return effects() >= 5; }));
    for (int i = 0; i < 5; ++i) c.poll_once(50ms);
    EXPECT_EQ(effects(), 5);
    EXPECT_EQ(distinct_effects(), 5);
    EXPECT_EQ(dead(), 0);
    EXPECT_EQ(c.stats().failures, 0u) << "a database error counted as a handler failure";
  }
};

TEST_F(InboxFailures, LockTimeoutInItsOwnStatementsIsRetried) {
  own_statements_wait_on_locks("-c lock_timeout=100");
}

TEST_F(InboxFailures, StatementTimeoutInItsOwnStatementsIsRetried) {
  own_statements_wait_on_locks("-c statement_timeout=150");
}

// A real deadlock on the inbox insert (as two consumers briefly processing the same partition
// during a rebalance can cause): another session holds m6's inbox row, the consumer's batch
// inserts m5 and waits for m6, the other session then inserts m5. PostgreSQL aborts the
// consumer's transaction (40P01, it waited longest); the batch is retried and applied once.
TEST_F(InboxFailures, RealDeadlockOnTheInboxInsertIsRetried) {
  auto cfg = config();
  cfg.batch_wait = 200ms;  // m5 and m6 in one batch, one INSERT
  txbox::Consumer c(cfg, record_effect());
  produce_ids(topic_, numbered_ids(5, 1));
  ASSERT_TRUE(poll_until(c, [&] { return effects() >= 5; }));
  std::atomic<int> step = 0;
  std::string other_error;
  std::jthread other([&] {
    try {
      pqxx::connection conn(endpoints().pg);
      pqxx::work tx(conn);
      const std::string insert = "INSERT INTO " + schema_ +
                                 ".inbox (consumer, message_id, topic, \"partition\", \"offset\") "
                                 "VALUES ($1, $2, $3, 0, $4)";
      pq::exec(tx, insert, cfg.name, "m6", topic_, 6);
      step = 1;
      while (step < 2) std::this_thread::sleep_for(5ms);
      std::this_thread::sleep_for(300ms);               // the consumer now waits for m6
      pq::exec(tx, insert, cfg.name, "m5", topic_, 5);  // waits for the consumer's m5
      step = 3;
    } catch (const std::exception& e) {
      other_error = e.what();  // this session lost the deadlock: fine too
      step = 3;
    }
  });  // rolls back: m5 and m6 are new to the consumer after all
  while (step < 1) std::this_thread::sleep_for(5ms);
  produce_ids(topic_, {{"m5", "f", 0}, {"m6", "g", 0}});
  step = 2;
  poll_until(
      c, [&] { return step >= 3; }, 30s);
  other.join();
  ASSERT_TRUE(poll_until(c, [&] { return effects() >= 7; }));
  for (int i = 0; i < 5; ++i) c.poll_once(50ms);
  EXPECT_EQ(effects(), 7) << other_error;
  EXPECT_EQ(distinct_effects(), 7);
  EXPECT_EQ(dead(), 0);
  EXPECT_EQ(c.stats().failures, 0u);
  EXPECT_GE(c.stats().database_retries, 1u) << "no deadlock happened: " << other_error;
}

// After a failover the session may land on a standby (25006, read-only transaction): the
// consumer opens a new connection until it gets a writable one.
TEST_F(InboxFailures, ReadOnlySessionIsReplacedUntilWritable) {
  sql("ALTER ROLE " + role_ + " SET default_transaction_read_only = on");
  auto cfg = config();
  cfg.database_url = url(true);
  txbox::Consumer c(cfg, record_effect());
  produce_ids(topic_, numbered_ids(10, 2));
  const auto until = std::chrono::steady_clock::now() + 3s;
  poll_until(c, [&] { return std::chrono::steady_clock::now() > until; });
  EXPECT_EQ(effects(), 0);
  sql("ALTER ROLE " + role_ + " RESET default_transaction_read_only");
  ASSERT_TRUE(poll_until(c, [&] { return effects() >= 10; }));
  EXPECT_EQ(effects(), 10);
  EXPECT_EQ(distinct_effects(), 10);
  EXPECT_EQ(dead(), 0);
  EXPECT_EQ(c.stats().failures, 0u);
}

// pg_terminate_backend (57P01 admin shutdown) at any moment of a batch, five times over.
TEST_F(InboxFailures, AdminShutdownMidBatchIsRetriedOnANewConnection) {
  constexpr int total = 400;
  produce_ids(topic_, numbered_ids(total, 2));
  auto cfg = config();
  cfg.max_batch = 20;
  const auto effect = record_effect();
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    std::this_thread::sleep_for(2ms);
  });
  pqxx::connection admin(endpoints().pg_admin);
  int kills = 0;
  auto next_kill = std::chrono::steady_clock::now() + 300ms;
  ASSERT_TRUE(poll_until(
      c,
      [&] {
        if (kills < 5 && std::chrono::steady_clock::now() > next_kill) {
          pq::exec(
              pqxx::nontransaction(admin),
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
              role_);
          ++kills;
          next_kill = std::chrono::steady_clock::now() + 250ms;
        }
        return kills >= 5 && distinct_effects() >= total;
      },
      90s));
  EXPECT_EQ(effects(), total) << "a message took effect twice";
  EXPECT_EQ(dead(), 0);
  EXPECT_EQ(c.stats().failures, 0u);
}

// Under SERIALIZABLE a concurrent writer makes the handler's UPDATE (or the commit) fail with
// 40001 again and again: with max_attempts = 1 each would dead-letter a good message.
TEST_F(InboxFailures, SerializationFailuresInTheHandlerDoNotDeadLetter) {
  sql("CREATE TABLE " + schema_ + ".counter (id int PRIMARY KEY, n bigint NOT NULL)");
  sql("INSERT INTO " + schema_ + ".counter VALUES (1, 0)");
  sql("GRANT SELECT, UPDATE ON " + schema_ + ".counter TO " + role_);
  constexpr int total = 60;
  produce_ids(topic_, numbered_ids(total, 2));
  auto cfg = config();
  cfg.max_attempts = 1;
  cfg.max_batch = 5;
  cfg.database_url = url(false, "options='-c default_transaction_isolation=serializable'");
  const std::string counter = schema_ + ".counter";
  const auto effect = record_effect();
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    tx.exec("UPDATE " + counter + " SET n = n + 1 WHERE id = 1");
    effect(tx, m);
  });
  std::atomic<bool> stop = false;
  std::atomic<std::int64_t> writes = 0;
  std::jthread writer([&] {
    pqxx::connection w(endpoints().pg);
    while (!stop) {
      pqxx::work tx(w);
      tx.exec("UPDATE " + counter + " SET n = n + 1 WHERE id = 1");
      std::this_thread::sleep_for(10ms);
      tx.commit();
      ++writes;
      std::this_thread::sleep_for(25ms);  // windows in which the consumer can commit
    }
  });
  const bool done = poll_until(
      c, [&] { return distinct_effects() >= total; }, 90s);
  stop = true;
  writer.join();
  ASSERT_TRUE(done);
  EXPECT_EQ(effects(), total);
  EXPECT_EQ(dead(), 0) << "a serialization failure dead-lettered a good message";
  EXPECT_EQ(scalar("SELECT n FROM " + counter), total + writes.load());
  EXPECT_EQ(c.stats().failures, 0u);
}

// A handler that throws libpqxx's transient types (deadlock, serialization failure) more
// often than max_attempts: retried without counting an attempt, applied once.
TEST_F(InboxFailures, TransientHandlerErrorsAreNotHandlerAttempts) {
  produce_ids(topic_, numbered_ids(10, 1));
  auto cfg = config();
  cfg.max_attempts = 3;
  const auto effect = record_effect();
  std::map<std::string, int> calls;
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    const int n = ++calls[m.id];
    if (m.id == "m3" && n <= 5)
      throw pq::sql_error_of<pqxx::deadlock_detected>("deadlock detected (test)", "40P01");
    if (m.id == "m6" && n <= 5)
      throw pq::sql_error_of<pqxx::serialization_failure>("could not serialize (test)", "40001");
    if (m.id == "m3" || m.id == "m6") {
      EXPECT_EQ(m.attempt, 1) << "a transient error counted as an attempt";
    }
  });
  ASSERT_TRUE(poll_until(c, [&] { return effects() >= 10; }));
  for (int i = 0; i < 5; ++i) c.poll_once(50ms);
  EXPECT_EQ(effects(), 10);
  EXPECT_EQ(distinct_effects(), 10);
  EXPECT_EQ(dead(), 0) << "a transient handler error dead-lettered a good message";
  EXPECT_EQ(c.stats().failures, 0u);
  EXPECT_EQ(c.stats().dead, 0u);
}

// The offsets cannot be read when partitions are assigned (the rebalance callback): the
// consumer (a process: an exception through librdkafka's callback would end it) survives,
// keeps the partitions paused, and consumes exactly once when the privilege is back.
TEST_F(InboxFailures, OffsetsUnreadableAtAssignmentRecoverWhenGrantedBack) {
  constexpr int total = 40;
  produce_ids(topic_, numbered_ids(total, 2));
  sql("REVOKE SELECT ON " + schema_ + ".inbox_offsets FROM txbox_consumer");
  const std::string name = "revoked_" + schema_;
  const std::vector<std::string> argv = {TXBOX_TEST_CONSUMER,
                                         "consumer.name=" + name,
                                         "consumer.topics=" + topic_,
                                         "consumer.retry_backoff_min_ms=50",
                                         "consumer.retry_backoff_max_ms=500",
                                         "database.url=" + url(true),
                                         "database.schema=" + schema_,
                                         "kafka.bootstrap.servers=" + endpoints().kafka,
                                         "kafka.session.timeout.ms=6000"};
  txbox::test::Process p(argv, "/tmp/" + name + ".log");
  std::this_thread::sleep_for(8s);
  ASSERT_TRUE(p.running()) << "the consumer died:\n" << p.output();
  EXPECT_EQ(effects(), 0);
  // A permanent error, said once with its fix; not "unreachable" at every retry.
  const std::string log = p.output();
  EXPECT_NE(log.find("database permanent error (42501)"), std::string::npos) << log;
  EXPECT_NE(log.find("Hint: grant"), std::string::npos) << log;
  EXPECT_EQ(log.find("database unreachable"), std::string::npos) << log;
  sql("GRANT SELECT ON " + schema_ + ".inbox_offsets TO txbox_consumer");
  const auto until = std::chrono::steady_clock::now() + 90s;
  while (distinct_effects() < total && std::chrono::steady_clock::now() < until && p.running()) {
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(p.running()) << p.output();
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(30s), 0) << p.output();
  EXPECT_EQ(distinct_effects(), total) << p.output();
  EXPECT_EQ(effects(), total) << "a message took effect twice";
  EXPECT_EQ(dead(), 0);
}

// A requeued dead message whose handler fails again with an error text that is not UTF-8:
// stored escaped (PostgreSQL text cannot hold it), and the consumer goes on.
TEST_F(InboxFailures, RequeueStoresANonUtf8ErrorEscaped) {
  produce_ids(topic_, numbered_ids(2, 1));
  auto cfg = config();
  cfg.max_attempts = 1;
  cfg.requeue_interval = 100ms;
  const auto effect = record_effect();
  std::atomic<bool> requeued = false;
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    if (m.id == "m0") throw std::runtime_error(requeued ? "bad \xff\xfe bytes" : "broken");
  });
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 1 && c.stats().dead >= 1; }));
  requeued = true;
  sql("UPDATE " + schema_ + ".inbox_dead SET requeued_at = now()");
  ASSERT_TRUE(poll_until(c, [&] {
    return scalar("SELECT count(*) FROM " + schema_ +
                  ".inbox_dead WHERE requeued_at IS NULL AND attempts = 2") == 1;
  }));
  pqxx::connection conn(endpoints().pg);
  EXPECT_EQ(pq::exec1(pqxx::nontransaction(conn), "SELECT error FROM " + schema_ + ".inbox_dead")[0]
                .as<std::string>(),
            "bad \\xff\\xfe bytes");
  produce_ids(topic_, {{"m2", "later", 0}});
  ASSERT_TRUE(poll_until(c, [&] { return effects() >= 2; }));
  EXPECT_EQ(effects(), 2);  // m1, m2
}

}  // namespace
