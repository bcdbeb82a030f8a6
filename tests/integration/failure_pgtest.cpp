// The failure classifier over errors the test database really raises: what libpqxx 6.4 throws
// for each, and what the classifier makes of it.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <optional>
#include <pqxx/pqxx>
#include <thread>

#include "harness.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::detail::failure;
using txbox::detail::failure_kind;
using txbox::test::endpoints;

template <class F>
failure classify_from(F&& f) {
  try {
    f();
  } catch (...) {
    return txbox::detail::classify_current();
  }
  ADD_FAILURE() << "nothing was thrown";
  return {};
}

class FailurePgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table = txbox::test::unique_name("classify");
    pqxx::connection c(endpoints().pg);
    pqxx::work tx(c);
    tx.exec("CREATE TABLE " + table + " (id int PRIMARY KEY, v int)");
    tx.exec("INSERT INTO " + table + " VALUES (1, 0), (2, 0)");
    tx.commit();
  }
  void TearDown() override {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction(c).exec("DROP TABLE IF EXISTS " + table);
  }
  std::string table;
};

TEST_F(FailurePgTest, LockTimeoutIsTransientOnALiveSession) {
  pqxx::connection holder(endpoints().pg);
  pqxx::work hold(holder);
  hold.exec("SELECT * FROM " + table + " WHERE id = 1 FOR UPDATE");
  pqxx::connection c(endpoints().pg);
  const auto f = classify_from([&] {
    pqxx::work tx(c);
    tx.exec("SET LOCAL lock_timeout = '50ms'");
    tx.exec("UPDATE " + table + " SET v = 1 WHERE id = 1");
  });
  EXPECT_EQ(f.sqlstate, "55P03");
  EXPECT_EQ(f.kind, failure_kind::db_transient);
  EXPECT_FALSE(f.reconnect);
  EXPECT_TRUE(c.is_open());
}

TEST_F(FailurePgTest, StatementTimeoutIsTransient) {
  pqxx::connection c(endpoints().pg);
  const auto f = classify_from([&] {
    pqxx::work tx(c);
    tx.exec("SET LOCAL statement_timeout = '20ms'");
    tx.exec("SELECT pg_sleep(2)");
  });
  EXPECT_EQ(f.sqlstate, "57014");
  EXPECT_EQ(f.kind, failure_kind::db_transient);
}

TEST_F(FailurePgTest, DeadlockIsTransient) {
  pqxx::connection a(endpoints().pg);
  pqxx::connection b(endpoints().pg);
  pqxx::work ta(a);
  pqxx::work tb(b);
  ta.exec("UPDATE " + table + " SET v = 1 WHERE id = 1");
  tb.exec("UPDATE " + table + " SET v = 1 WHERE id = 2");
  // a waits for b's row, then b for a's: PostgreSQL picks one of them as the victim.
  const auto cross = [this](pqxx::work& tx, int id) -> std::optional<failure> {
    try {
      tx.exec("UPDATE " + table + " SET v = 2 WHERE id = " + std::to_string(id));
      tx.commit();
      return std::nullopt;
    } catch (...) {
      return txbox::detail::classify_current();
    }
  };
  auto wait_a = std::async(std::launch::async, [&] { return cross(ta, 2); });
  std::this_thread::sleep_for(200ms);
  const auto fb = cross(tb, 1);
  const auto fa = wait_a.get();
  ASSERT_NE(fa.has_value(), fb.has_value()) << "exactly one of the two is the victim";
  const failure& victim = fa ? *fa : *fb;
  EXPECT_EQ(victim.sqlstate, "40P01");
  EXPECT_EQ(victim.kind, failure_kind::db_transient);
  EXPECT_FALSE(victim.reconnect);
}

TEST_F(FailurePgTest, SerializationFailureAtCommitIsTransient) {
  pqxx::connection a(endpoints().pg);
  pqxx::connection b(endpoints().pg);
  pqxx::transaction<pqxx::serializable> ta(a);
  pqxx::transaction<pqxx::serializable> tb(b);
  ta.exec("SELECT sum(v) FROM " + table);
  tb.exec("SELECT sum(v) FROM " + table);
  ta.exec("UPDATE " + table + " SET v = v + 1 WHERE id = 1");
  tb.exec("UPDATE " + table + " SET v = v + 1 WHERE id = 2");
  ta.commit();
  const auto f = classify_from([&] { tb.commit(); });
  EXPECT_EQ(f.sqlstate, "40001");
  EXPECT_EQ(f.kind, failure_kind::db_transient);
}

TEST_F(FailurePgTest, ReadOnlyTransactionAsOnAStandbyReconnects) {
  pqxx::connection c(endpoints().pg + " options='-c default_transaction_read_only=on'");
  const auto f =
      classify_from([&] { pqxx::work(c).exec("UPDATE " + table + " SET v = 3 WHERE id = 1"); });
  EXPECT_EQ(f.sqlstate, "25006");
  EXPECT_EQ(f.kind, failure_kind::db_transient);
  EXPECT_TRUE(f.reconnect) << "after a failover the session is on a standby: open a new one";
}

TEST_F(FailurePgTest, AdminShutdownOfTheSessionReconnects) {
  pqxx::connection c(endpoints().pg);
  const int pid = c.backendpid();
  {
    pqxx::connection admin(endpoints().pg_admin);
    pq::exec(pqxx::nontransaction(admin), "SELECT pg_terminate_backend($1)", pid);
  }
  std::this_thread::sleep_for(100ms);
  const auto f = classify_from([&] { pqxx::nontransaction(c).exec("SELECT 1"); });
  EXPECT_EQ(f.kind, failure_kind::db_transient) << f.message;
  EXPECT_TRUE(f.reconnect);
}

TEST_F(FailurePgTest, TooManyConnectionsIsTransient) {
  const std::string role = txbox::test::unique_name("nolimit");
  pqxx::connection admin(endpoints().pg_admin);
  pqxx::nontransaction(admin).exec("CREATE ROLE " + role + " LOGIN CONNECTION LIMIT 0");
  const auto f = classify_from([&] { pqxx::connection c(endpoints().pg + " user=" + role); });
  pqxx::nontransaction(admin).exec("DROP ROLE " + role);
  EXPECT_EQ(f.kind, failure_kind::db_transient) << f.message;
  EXPECT_TRUE(f.reconnect);
}

TEST_F(FailurePgTest, PrivilegesAndMissingObjectsArePermanentWithAHint) {
  const std::string role = txbox::test::unique_name("nopriv");
  pqxx::connection admin(endpoints().pg_admin);
  pqxx::nontransaction(admin).exec("CREATE ROLE " + role + " LOGIN");
  {
    pqxx::connection c(endpoints().pg + " user=" + role);
    const auto denied = classify_from([&] { pqxx::work(c).exec("SELECT * FROM " + table); });
    EXPECT_EQ(denied.sqlstate, "42501") << denied.message;
    EXPECT_EQ(denied.kind, failure_kind::db_permanent);
    EXPECT_NE(denied.hint.find("grant"), std::string::npos) << denied.hint;
    EXPECT_FALSE(denied.reconnect);
  }
  pqxx::nontransaction(admin).exec("DROP ROLE " + role);
  pqxx::connection c(endpoints().pg);
  const auto missing = classify_from([&] { pqxx::work(c).exec("SELECT * FROM no_such_table"); });
  EXPECT_EQ(missing.sqlstate, "42P01");
  EXPECT_EQ(missing.kind, failure_kind::db_permanent);
  EXPECT_NE(missing.hint.find("migration"), std::string::npos) << missing.hint;
  const auto column =
      classify_from([&] { pqxx::work(c).exec("SELECT no_such_column FROM " + table); });
  EXPECT_EQ(column.sqlstate, "42703");
  EXPECT_EQ(column.kind, failure_kind::db_permanent);
  const auto unique =
      classify_from([&] { pqxx::work(c).exec("INSERT INTO " + table + " VALUES (1, 0)"); });
  EXPECT_EQ(unique.sqlstate, "23505");
  EXPECT_EQ(unique.kind, failure_kind::db_permanent);
}

TEST_F(FailurePgTest, ConversionOfAResultIsABugNotAnOutage) {
  pqxx::connection c(endpoints().pg);
  const auto f = classify_from([&] {
    pqxx::work tx(c);
    (void)pq::exec1(tx, "SELECT 'not a number'")[0].as<int>();
  });
  EXPECT_EQ(f.kind, failure_kind::bug) << f.message;
}

}  // namespace
