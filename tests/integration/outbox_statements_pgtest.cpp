// txbox::outbox against a real PostgreSQL with the migrations applied: how enqueue runs its
// statements, prepared once per connection (and again after a reset), and how it locks its
// keys so that id order is commit order per key.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <latch>
#include <optional>
#include <pqxx/pqxx>
#include <thread>

#include "harness.hpp"
#include "outbox_fixture.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using txbox::test::endpoints;
using txbox::test::OutboxTest;

long prepared_statements(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  return pq::exec1(
             n, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'txbox_enqueue_%'")[0]
      .as<long>();
}

// Statement names are per connection: two outboxes in different schemas on one connection
// each get their own (and a second Outbox of the same schema reuses them).
TEST_F(OutboxTest, PreparedStatementsOfTwoSchemasOnOneConnectionDoNotCollide) {
  const std::string other = txbox::test::unique_name("ob2");
  txbox::test::create_schema(other);
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox a = outbox(), a2 = outbox();
  const txbox::Outbox b({.schema = other});
  for (int round = 0; round < 3; ++round) {
    pqxx::work tx(c);
    a.enqueue(tx, {.topic = "t", .key = "k", .payload = "a"});
    b.enqueue(tx, {.topic = "t", .key = "k", .payload = "b"});
    a2.enqueue(tx, {.topic = "t", .key = "k", .payload = "a"});
    const std::vector<txbox::Message> two(2, txbox::Message{.topic = "t", .payload = "b"});
    b.enqueue(tx, two);
    tx.commit();
  }
  EXPECT_EQ(prepared_statements(c), 3);  // a: 1 row; b: 1 and 2 rows
  pqxx::nontransaction n(c);
  EXPECT_EQ(
      pq::exec1(n, "SELECT count(*) FILTER (WHERE payload = 'a') FROM " + schema_ + ".outbox")[0]
          .as<long>(),
      6);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM " + schema_ + ".outbox")[0].as<long>(), 6);
  EXPECT_EQ(
      pq::exec1(n, "SELECT count(*) FILTER (WHERE payload = 'b') FROM " + other + ".outbox")[0]
          .as<long>(),
      9);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM " + other + ".outbox")[0].as<long>(), 9);
}

// Batches between 17 and 1024 rows run the statement of the next power of two, padded: each
// inserts exactly its rows, in order, and a size is prepared once.
TEST_F(OutboxTest, PaddedPreparedBatchesInsertExactlyTheirRowsInOrder) {
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox ob = outbox();
  int seq = 0;
  for (const int n : {100, 17, 100, 1024}) {
    std::vector<txbox::Message> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back(
          {.topic = "t", .key = "k" + std::to_string(i % 5), .payload = std::to_string(seq++)});
    }
    pqxx::work tx(c);
    ob.enqueue(tx, batch);
    tx.commit();
  }
  EXPECT_EQ(prepared_statements(c), 3);  // 128, 32 and 1024 rows
  pqxx::nontransaction n(c);
  const auto r =
      n.exec("SELECT convert_from(payload, 'UTF8') FROM " + schema_ + ".outbox ORDER BY id");
  ASSERT_EQ(r.size(), static_cast<std::size_t>(seq));
  for (int i = 0; i < seq; ++i) EXPECT_EQ(r[i][0].as<std::string>(), std::to_string(i));
}

// libpqxx 7 prepares a statement at once and refuses a name the session has: on it, the
// second enqueue on a connection threw "prepared statement ... already exists" and aborted
// the caller's transaction. Each statement is prepared once per connection, with no query per
// enqueue once known.
TEST_F(OutboxTest, ASecondEnqueueOnAConnectionReusesItsStatement) {
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox ob = outbox();
  for (int round = 0; round < 3; ++round) {
    pqxx::work tx(c);
    ob.enqueue(tx, {.topic = "t", .key = "k", .payload = "first"});
    ob.enqueue(tx, {.topic = "t", .key = "k", .payload = "second"});
    tx.commit();
  }
  EXPECT_EQ(prepared_statements(c), 1);
  EXPECT_EQ(count(c), 6);
}

// The connection is lost. libpqxx 6.4 reconnects by itself and prepares again on the new
// session; with 7.x the application opens a new connection, here at the very address of the
// old one: the outbox must see it is another session and prepare there.
TEST_F(OutboxTest, EnqueueWorksAfterTheConnectionWasReset) {
  std::optional<pqxx::connection> c(std::in_place, endpoints().pg);
  const txbox::Outbox ob = outbox();
  {
    pqxx::work tx(*c);
    ob.enqueue(tx, {.topic = "t", .key = "k", .payload = "before"});
    tx.commit();
  }
  const int pid = c->backendpid();
  {
    pqxx::connection killer(endpoints().pg);
    pq::exec(pqxx::nontransaction(killer), "SELECT pg_terminate_backend($1)", pid);
  }
#if TXBOX_PQXX7
  const pqxx::connection* const old = &*c;
  c.emplace(endpoints().pg);
  ASSERT_EQ(&*c, old);
#else
  // 6.4 notices the loss at the next use and reconnects at a later one (the first attempt
  // may fail too).
  bool back = false;
  for (int attempt = 0; attempt < 10 && !back; ++attempt) {
    try {
      pqxx::work tx(*c);
      tx.exec("SELECT 1");
      back = true;
    } catch (const pqxx::broken_connection&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(back) << "libpqxx did not reconnect";
#endif
  {
    pqxx::work tx(*c);
    ob.enqueue(tx, {.topic = "t", .key = "k", .payload = "after"});
    tx.commit();
  }
  EXPECT_NE(c->backendpid(), pid);
  EXPECT_EQ(prepared_statements(*c), 1);
  EXPECT_EQ(count(*c), 2);
}

TEST_F(OutboxTest, WithoutPreparedStatementsNothingIsPrepared) {
  pqxx::connection c(endpoints().pg);
  const txbox::Outbox ob({.schema = schema_, .prepare_statements = false});
  for (const std::size_t rows : {std::size_t{1}, std::size_t{5}}) {
    pqxx::work tx(c);
    ob.enqueue(tx, std::vector<txbox::Message>(rows, {.topic = "t", .key = "k", .payload = "x"}));
    tx.commit();
  }
  EXPECT_EQ(prepared_statements(c), 0);
  EXPECT_EQ(count(c), 6);
}

// One key's transactions are serialised from their first enqueue to their commit, so the
// first to insert cannot commit after a later one: id order is commit order per key.
TEST_F(OutboxTest, SameKeyWritersAreSerialisedSoIdOrderIsCommitOrder) {
  pqxx::connection c1(endpoints().pg);
  pqxx::connection c2(endpoints().pg);
  pqxx::connection watcher(endpoints().pg);
  pqxx::work t1(c1);
  outbox().enqueue(t1, {.topic = "t", .key = "K", .payload = "first"});

  const int pid2 = c2.backendpid();
  auto second = std::async(std::launch::async, [&] {
    pqxx::work t2(c2);
    outbox().enqueue(t2, {.topic = "t", .key = "K", .payload = "second"});
    t2.commit();
  });
  // Wait until the second writer is blocked on txbox's advisory lock.
  bool blocked = false;
  for (int i = 0; i < 200 && !blocked; ++i) {
    pqxx::nontransaction n(watcher);
    blocked = pq::exec1(n,
                        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted AND "
                        "locktype = 'advisory'",
                        pid2)[0]
                  .as<int>() == 1;
    if (!blocked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(blocked) << "the second writer of key K was not blocked by the first";
  // It waits before its row takes an identity id (the sequence is not transactional): the
  // lock comes first in the statement, so the ids of one key are in commit order.
  {
    pqxx::nontransaction n(watcher);
    EXPECT_EQ(pq::exec1(n, "SELECT last_value FROM " + schema_ + ".outbox_id_seq")[0].as<long>(),
              pq::exec1(n, "SELECT count(*) FROM " + schema_ + ".outbox")[0].as<long>() + 1)
        << "the blocked writer's row already took an id: the key lock is taken too late";
  }
  // A writer of another key is not held up.
  {
    pqxx::connection c3(endpoints().pg);
    pqxx::work t3(c3);
    outbox().enqueue(t3, {.topic = "t", .key = "other", .payload = "x"});
    t3.commit();
  }
  EXPECT_EQ(second.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  t1.commit();
  second.get();
  pqxx::work tx(watcher);
  const auto rows =
      tx.exec("SELECT payload FROM " + schema_ + ".outbox WHERE key = 'K' ORDER BY id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(pq::bytes_of(rows[0][0]), "first");
  EXPECT_EQ(pq::bytes_of(rows[1][0]), "second");
}

// Batches over one statement (65535 parameters / 5 columns = 13,107 rows) used to take their
// key locks chunk by chunk: A's first chunk holds "ka" and wants "kb" in its second, B's first
// holds "kb" and wants "ka": deadlock_detected (40P01). All keys are now locked at once, in
// hash order, before the first chunk, so both commit.
TEST_F(OutboxTest, TwoLargeBatchesWithCrossingKeysBothCommit) {
  constexpr std::size_t rows_per_statement = 65535 / 5;
  constexpr std::size_t rows = 30'000;
  auto batch = [&](const std::string& first, const std::string& second) {
    std::vector<txbox::Message> v;
    v.reserve(rows);
    for (std::size_t i = 0; i < rows; ++i) {
      const std::string key = i < rows_per_statement       ? first
                              : i < 2 * rows_per_statement ? second
                                                           : first + "-" + std::to_string(i);
      v.push_back({.topic = "orders", .key = key, .payload = std::string(100, 'p')});
    }
    return v;
  };
  for (int round = 0; round < 2; ++round) {
    const auto a = batch("ka" + std::to_string(round), "kb" + std::to_string(round));
    const auto b = batch("kb" + std::to_string(round), "ka" + std::to_string(round));
    std::latch start(2);
    auto writer = [&](const std::vector<txbox::Message>* messages) -> std::string {
      try {
        pqxx::connection c(endpoints().pg);
        pqxx::work tx(c);
        start.arrive_and_wait();
        outbox().enqueue(tx, *messages);
        tx.commit();
        return "";
      } catch (const pqxx::deadlock_detected& e) {
        return std::string("deadlock_detected (40P01): ") + e.what();
      } catch (const std::exception& e) {
        return e.what();
      }
    };
    auto fa = std::async(std::launch::async, writer, &a);
    auto fb = std::async(std::launch::async, writer, &b);
    EXPECT_EQ(fa.get(), "") << "round " << round;
    EXPECT_EQ(fb.get(), "") << "round " << round;
  }
  pqxx::connection c(endpoints().pg);
  EXPECT_EQ(count(c), static_cast<long>(4 * rows));
}

// The keys of a batch over one statement go to the lock statement as one text[] literal:
// quotes, backslashes, braces and commas in keys must arrive intact.
TEST_F(OutboxTest, LargeBatchLocksKeysWithQuotesAndBraces) {
  pqxx::connection c(endpoints().pg);
  const std::vector<std::string> keys = {"a\"b", "c\\d", "{e,f}", "g h", "NULL", "ünï"};
  std::vector<txbox::Message> batch;
  for (std::size_t i = 0; i < 13'108; ++i) {
    batch.push_back({.topic = "t",
                     .key = i % 7 == 6 ? std::nullopt : std::optional(keys[i % 7 % keys.size()]),
                     .payload = "p"});
  }
  pqxx::work tx(c);
  EXPECT_EQ(outbox().enqueue(tx, batch).size(), batch.size());
  // One lock per distinct key, all held by this transaction.
  EXPECT_EQ(pq::exec1(tx,
                      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                      "pg_backend_pid() AND classid = 29816")[0]
                .as<long>(),
            static_cast<long>(keys.size()));
  tx.commit();
  EXPECT_EQ(count(c), 13'108);
}

}  // namespace
