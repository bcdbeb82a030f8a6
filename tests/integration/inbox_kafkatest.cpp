// txbox::inbox on the real broker and database: one effect per message id, whatever crashes,
// rebalances, retries or dead letters happen on the way.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "harness.hpp"
#include "inbox_fixture.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/inbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::InboxTest;
using txbox::test::numbered;
using txbox::test::Out;
using txbox::test::produce;

TEST_F(InboxTest, SameIdProducedTwiceHasOneEffect) {
  produce(topic_, {{"dup-1", "a", 0}, {"dup-1", "a", 0}, {"other", "b", 1}, {"dup-1", "a", 2}});
  txbox::Consumer c(config(), record_effect());
  ASSERT_TRUE(poll_until(c, [&] {
    const auto s = c.stats();
    return s.processed + s.duplicates >= 4;
  }));
  EXPECT_EQ(c.stats().processed, 2u);
  EXPECT_EQ(c.stats().duplicates, 2u);
  EXPECT_EQ(effects(), 2);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects WHERE message_id = 'dup-1'"), 1);
}

TEST_F(InboxTest, MessagesWithoutIdDedupeOnTopicPartitionOffset) {
  produce(topic_, {{"", "x", 0}, {"", "y", 0}});
  {
    txbox::Consumer c(config(), record_effect());
    ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 2; }));
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ +
                   ".effects WHERE message_id = 'kafka:" + topic_ + "/0/0'"),
            1);
  // Even when the stored offset is lost, the same record is recognised.
  pqxx::connection conn(endpoints().pg);
  pq::exec0(pqxx::nontransaction(conn), "DELETE FROM " + schema_ + ".inbox_offsets");
  txbox::Consumer again(config(), record_effect());
  ASSERT_TRUE(poll_until(again, [&] { return again.stats().duplicates >= 2; }));
  EXPECT_EQ(again.stats().processed, 0u);
  EXPECT_EQ(effects(), 2);
}

// D2: a consumer closed (unsubscribed) mid-stream and started again applies every message once.
TEST_F(InboxTest, CloseMidStreamAndRestartGivesNoDuplicate) {
  constexpr int total = 600;
  produce(topic_, numbered(total, 4));
  auto cfg = config();
  cfg.max_batch = 25;
  for (int round = 0; round < 3; ++round) {
    txbox::Consumer c(cfg, record_effect());
    ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 100; }));
  }  // destroyed mid-stream: leaves the group with messages fetched but not processed
  ASSERT_LT(effects(), total - 100) << "the stream ended before the last restart";
  txbox::Consumer last(cfg, record_effect());
  ASSERT_TRUE(poll_until(last, [&] { return distinct_effects() >= total; }));
  EXPECT_EQ(last.stats().duplicates, 0u);
  EXPECT_EQ(effects(), total);
}

// A consumer may start before its topic exists (a fresh deployment): it picks the topic up
// once it is created, within seconds rather than librdkafka's default five minutes.
TEST_F(InboxTest, ConsumerStartedBeforeItsTopicExistsConsumesItLater) {
  auto cfg = config();
  cfg.topics = {txbox::test::unique_name("late_topic")};
  txbox::Consumer c(cfg, record_effect());
  for (int i = 0; i < 10; ++i) c.poll_once(100ms);
  txbox::test::create_topic(cfg.topics[0], 2);
  produce(cfg.topics[0], numbered(5, 2));
  ASSERT_TRUE(poll_until(
      c, [&] { return c.stats().processed >= 5; }, 45s));
  EXPECT_EQ(effects(), 5);
}

// Found by the chaos suite: librdkafka keeps a partition's pause flag across a revoke and a
// new assignment, so a partition paused for a retry backoff and assigned back stayed paused.
TEST_F(InboxTest, APartitionPausedForARetryIsConsumedAfterARebalance) {
  auto cfg = config();
  cfg.topics = {txbox::test::unique_name("paused_topic")};
  txbox::test::create_topic(cfg.topics[0], 1);
  produce(cfg.topics[0], numbered(3, 1));
  cfg.max_attempts = 2;
  cfg.retry_backoff_min = 4s;
  cfg.retry_backoff_max = 4s;
  cfg.kafka["session.timeout.ms"] = "3000";
  const auto effect = record_effect();
  auto handler = [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    if (m.id == "m0") throw std::runtime_error("poison");
    effect(tx, m);
  };
  txbox::Consumer a(cfg, handler);
  ASSERT_TRUE(poll_until(a, [&] { return a.stats().failures >= 1; }));
  {
    // Another member joins and leaves while the partition waits for its retry.
    txbox::Consumer b(cfg, handler);
    for (int i = 0; i < 20; ++i) {
      a.poll_once(50ms);
      b.poll_once(50ms);
    }
  }
  ASSERT_TRUE(poll_until(
      a, [&] { return effects() >= 2; }, 40s))
      << "the partition was never consumed again";
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".inbox_dead"), 1);
}

TEST_F(InboxTest, HandlerExceptionLeavesNoneOfItsWrites) {
  produce(topic_, numbered(20, 1));
  std::map<std::string, int> calls;
  const auto effect = record_effect();
  auto cfg = config();
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);  // written, then thrown away when the handler fails
    if (m.id == "m7" && ++calls[m.id] <= 2) throw std::runtime_error("flaky downstream");
    if (m.id == "m7") {
      EXPECT_EQ(m.attempt, 3);
    }
  });
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 20; }));
  EXPECT_EQ(effects(), 20);
  EXPECT_EQ(distinct_effects(), 20);
  EXPECT_EQ(c.stats().failures, 2u);
  EXPECT_EQ(c.stats().dead, 0u);
  // Order within the partition held: m7 before m8.
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects a JOIN " + schema_ +
                   ".effects b ON a.message_id = 'm7' AND b.message_id = 'm8' AND "
                   "a.ctid < b.ctid"),
            1);
}

TEST_F(InboxTest, PoisonMessageGoesDeadAndThePartitionGoesOn) {
  produce(topic_, numbered(10, 1));
  auto cfg = config();
  cfg.max_attempts = 3;
  const auto effect = record_effect();
  bool healed = false;
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    if (m.id == "m4" && !healed) throw std::runtime_error("cannot parse order 4");
  });
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 9; }));
  EXPECT_EQ(c.stats().dead, 1u);
  EXPECT_EQ(c.stats().failures, 3u);
  EXPECT_EQ(effects(), 9);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects WHERE message_id = 'm4'"), 0);
  pqxx::connection conn(endpoints().pg);
  {
    pqxx::nontransaction n(conn);
    const auto dead = pq::exec1(n,
                                "SELECT message_id, \"offset\", attempts, error, "
                                "convert_from(payload, 'UTF8'), headers::text FROM " +
                                    schema_ + ".inbox_dead");
    EXPECT_EQ(dead[0].as<std::string>(), "m4");
    EXPECT_EQ(dead[1].as<int>(), 4);
    EXPECT_EQ(dead[2].as<int>(), 3);
    EXPECT_EQ(dead[3].as<std::string>(), "cannot parse order 4");
    EXPECT_EQ(dead[4].as<std::string>(), "v4");
    EXPECT_EQ(dead[5].as<std::string>(), "[[\"ce_id\", \"m4\"]]");
    EXPECT_EQ(pq::exec1(n, "SELECT next_offset FROM " + schema_ + ".inbox_offsets")[0].as<int>(),
              10);
  }
  // Requeued after the fix: processed once, the dead row gone.
  healed = true;
  pq::exec0(pqxx::nontransaction(conn),
            "UPDATE " + schema_ + ".inbox_dead SET requeued_at = now()");
  ASSERT_TRUE(poll_until(
      c, [&] { return c.stats().requeued >= 1; }, 30s));
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects WHERE message_id = 'm4'"), 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".inbox_dead"), 0);
}

TEST_F(InboxTest, RequeuedMessageThatFailsAgainStaysDead) {
  produce(topic_, numbered(2, 1));
  auto cfg = config();
  cfg.max_attempts = 1;
  cfg.requeue_interval = 100ms;
  const auto effect = record_effect();
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    effect(tx, m);
    if (m.id == "m0") throw std::runtime_error("still broken");
  });
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 1 && c.stats().dead >= 1; }));
  pqxx::connection conn(endpoints().pg);
  pq::exec0(pqxx::nontransaction(conn),
            "UPDATE " + schema_ + ".inbox_dead SET requeued_at = now()");
  ASSERT_TRUE(poll_until(c, [&] {
    return scalar("SELECT count(*) FROM " + schema_ +
                  ".inbox_dead WHERE requeued_at IS NULL AND attempts = 2") == 1;
  }));
  EXPECT_EQ(effects(), 1);  // m1 only: the failed requeue left nothing
}

TEST_F(InboxTest, BlockPolicyHoldsThePartition) {
  produce(topic_, numbered(5, 1));
  auto cfg = config();
  cfg.max_attempts = 2;
  cfg.on_failure = txbox::FailurePolicy::block;
  std::atomic<int> failures_left = 6;
  const auto effect = record_effect();
  txbox::Consumer c(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    if (m.id == "m2" && failures_left-- > 0) throw std::runtime_error("downstream down");
    effect(tx, m);
  });
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().failures >= 4; }));
  EXPECT_EQ(effects(), 2);  // m0, m1; m3 and m4 wait behind m2
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 5; }));
  EXPECT_EQ(c.stats().dead, 0u);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".inbox_dead"), 0);
}

TEST_F(InboxTest, OffsetsComeFromPostgresNotKafka) {
  produce(topic_, numbered(40, 4));
  auto cfg = config();
  {
    txbox::Consumer c(cfg, record_effect());
    ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 40; }));
  }
  // Delete the group and with it every offset Kafka holds for it.
  char err[512];
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  txbox::detail::kafka_ptr admin(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  txbox::detail::queue_ptr q(rd_kafka_queue_new(admin.get()));
  rd_kafka_DeleteGroup_t* group = rd_kafka_DeleteGroup_new(cfg.name.c_str());
  rd_kafka_DeleteGroups(admin.get(), &group, 1, nullptr, q.get());
  rd_kafka_DeleteGroup_destroy(group);
  txbox::detail::event_ptr ev(rd_kafka_queue_poll(q.get(), 30000));
  ASSERT_TRUE(ev);
  ASSERT_EQ(rd_kafka_event_error(ev.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto* res = rd_kafka_event_DeleteGroups_result(ev.get());
  size_t n = 0;
  const auto** groups = rd_kafka_DeleteGroups_result_groups(res, &n);
  ASSERT_EQ(n, 1u);
  ASSERT_FALSE(rd_kafka_group_result_error(groups[0]))
      << rd_kafka_error_string(rd_kafka_group_result_error(groups[0]));

  produce(topic_, {{"late", "l", 2}});
  txbox::Consumer again(cfg, record_effect());
  ASSERT_TRUE(poll_until(again, [&] { return again.stats().processed >= 1; }));
  for (int i = 0; i < 10; ++i) again.poll_once(100ms);
  EXPECT_EQ(again.stats().processed, 1u);
  EXPECT_EQ(again.stats().duplicates, 0u);  // the old messages were never even read
  EXPECT_EQ(effects(), 41);
}

TEST_F(InboxTest, RetentionRemovesOnlyOldRows) {
  produce(topic_, numbered(30, 2));
  auto cfg = config();
  cfg.cleanup_interval = 1s;  // the least consumer.cleanup_interval_ms allows
  cfg.cleanup_batch = 7;      // several short DELETEs
  txbox::Consumer c(cfg, record_effect());
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 30; }));
  pqxx::connection conn(endpoints().pg);
  pq::exec0(pqxx::nontransaction(conn),
            "UPDATE " + schema_ +
                ".inbox SET processed_at = now() - interval '8 days' WHERE message_id < 'm2'");
  const auto old_rows =
      scalar("SELECT count(*) FROM " + schema_ + ".inbox WHERE message_id < 'm2'");
  ASSERT_GT(old_rows, 10);
  ASSERT_TRUE(poll_until(
      c, [&] { return c.stats().cleaned >= static_cast<std::uint64_t>(old_rows); }, 30s));
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".inbox"), 30 - old_rows);
  EXPECT_EQ(c.stats().cleaned, static_cast<std::uint64_t>(old_rows));
}

TEST_F(InboxTest, MetricsAreExposed) {
  produce(topic_, numbered(8, 4));
  txbox::Consumer c(config(), record_effect());
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 8; }));
  c.poll_once(100ms);
  const std::string text = c.metrics_text();
  EXPECT_NE(text.find("txbox_inbox_processed_total{consumer=\"projector_" + schema_ + "\"} 8"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("txbox_inbox_handler_seconds_count{consumer=\"projector_" + schema_ + "\"} 8"),
      std::string::npos);
  EXPECT_NE(text.find("txbox_inbox_lag_messages{consumer=\"projector_" + schema_ + "\",topic=\"" +
                      topic_ + "\",partition=\"0\"} 0"),
            std::string::npos)
      << text;
  EXPECT_TRUE(c.stats().ready);
}

// Records written in Kafka transactions, as an exactly-once relay writes them: the handler
// sees the committed transaction's records and never the aborted one's, and once they are
// handled the lag is 0 although a commit marker follows the last record.
TEST_F(InboxTest, ReadsOnlyCommittedTransactionsAndLagEndsAtZero) {
  char err[512];
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", endpoints().kafka},
           {"transactional.id", txbox::test::unique_name("inbox_txn")}}) {
    ASSERT_EQ(rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err),
              RD_KAFKA_CONF_OK);
  }
  txbox::detail::kafka_ptr p(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  ASSERT_TRUE(p) << err;
  ASSERT_EQ(rd_kafka_init_transactions(p.get(), 30000), nullptr);
  const auto transaction = [&](const std::vector<Out>& records, bool commit) {
    ASSERT_EQ(rd_kafka_begin_transaction(p.get()), nullptr);
    for (const auto& r : records) {
      txbox::detail::headers_ptr h(rd_kafka_headers_new(1));
      rd_kafka_header_add(h.get(), "ce_id", -1, r.id.data(), static_cast<ssize_t>(r.id.size()));
      ASSERT_EQ(rd_kafka_producev(
                    p.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_PARTITION(r.partition),
                    RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h.get()),
                    RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      h.release();  // producev took the headers
    }
    // Every record written (its partition added to the transaction) before the transaction
    // ends: the aborted records are then in the log for the consumer to skip, and EndTxn never
    // races an AddPartitionsToTxn still in flight (INVALID_TXN_STATE, seen once in CI).
    ASSERT_EQ(rd_kafka_flush(p.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_error_t* e = commit ? rd_kafka_commit_transaction(p.get(), 30000)
                                 : rd_kafka_abort_transaction(p.get(), 30000);
    ASSERT_EQ(e, nullptr) << rd_kafka_error_string(e);
  };
  transaction(numbered(8, 4, "c"), true);
  transaction(numbered(8, 4, "a"), false);
  transaction(numbered(4, 4, "d"), true);

  txbox::Consumer c(config(), record_effect());
  ASSERT_TRUE(poll_until(c, [&] { return c.stats().processed >= 12; }));
  for (int i = 0; i < 5; ++i) c.poll_once(100ms);
  EXPECT_EQ(c.stats().processed, 12u);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ + ".effects WHERE message_id LIKE 'a%'"), 0);
  const auto lag = c.stats().lag;
  EXPECT_EQ(lag.size(), 4u);
  for (const auto& [tp, n] : lag) EXPECT_EQ(n, 0) << tp;
}

TEST_F(InboxTest, UnmigratedSchemaIsRefusedWithTheMigrationToApply) {
  auto cfg = config();
  cfg.schema = "no_such_schema";
  try {
    txbox::Consumer c(cfg, record_effect());
    FAIL() << "expected schema_error";
  } catch (const txbox::schema_error& e) {
    EXPECT_NE(std::string(e.what()).find("V1__create_txbox_schema.sql"), std::string::npos);
  }
  pqxx::connection conn(endpoints().pg);
  // A schema at version 2: the consumer needs V3 (later migrations, such as V4's SQL enqueue,
  // are not the inbox's business).
  pq::exec0(pqxx::nontransaction(conn),
            "DELETE FROM " + schema_ + ".schema_version WHERE version >= 3");
  try {
    txbox::Consumer c(config(), record_effect());
    FAIL() << "expected schema_error";
  } catch (const txbox::schema_error& e) {
    EXPECT_NE(std::string(e.what()).find("V3__"), std::string::npos) << e.what();
  }
}

TEST_F(InboxTest, UnreachableDatabaseIsATransientErrorWithoutThePassword) {
  auto cfg = config();
  cfg.database_url = "postgresql://txbox_owner:s3cret-pw@127.0.0.1:1/txbox?connect_timeout=2";
  try {
    txbox::Consumer c(cfg, record_effect());
    FAIL() << "expected transient_error";
  } catch (const txbox::transient_error& e) {
    EXPECT_EQ(std::string(e.what()).find("s3cret-pw"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("database.url"), std::string::npos) << e.what();
  }
}

// The database goes away mid-stream (connections cut, new ones refused) and comes back:
// consumption pauses, then resumes from the stored offsets without loss or duplicate.

}  // namespace
