// txboxctl on a large backlog and on database failures: bounded reads, the failure classifier.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <pqxx/pqxx>
#include <thread>

#include "txbox/detail/pq.hpp"
#include "txbox/uuid.hpp"
#include "txboxctl_fixture.hpp"

namespace pq = txbox::pq;

namespace {

using namespace txbox::test::ctl;

// A large backlog is counted exactly only up to a cap (then PostgreSQL's estimate, said so),
// in short statements: status used to group the whole outbox in one repeatable-read
// snapshot, reading every row (and holding back vacuum of a delete-heavy table meanwhile).
TEST_F(Txboxctl, StatusOfALargeBacklogReadsABoundedNumberOfRows) {
  constexpr long rows = 300'000;
  pq::exec0(pqxx::nontransaction(*conn_),
            "INSERT INTO " + schema_ +
                ".outbox (message_id, topic, key, payload) SELECT gen_random_uuid(), 'orders', "
                "'k' || (i % 5000), '\\x00'::bytea FROM generate_series(1, " +
                std::to_string(rows) + ") i");
  pq::exec0(pqxx::nontransaction(*conn_), "ANALYZE " + schema_ + ".outbox");
  auto tuples_read = [&] {
    pqxx::nontransaction n(*conn_);
    n.exec("SELECT pg_stat_clear_snapshot()");
    return pq::exec1(n,
                     "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM "
                     "pg_stat_user_tables WHERE relid = to_regclass($1)",
                     schema_ + ".outbox")[0]
        .as<long>();
  };
  const long before = tuples_read();
  json j;
  ASSERT_EQ(run_json("status", &j), 0);
  // The backend of txboxctl flushes its statistics when it exits; allow it a moment.
  long read = 0;
  for (int i = 0; i < 50; ++i) {
    read = tuples_read() - before;
    if (read > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(read, 0);
  EXPECT_LT(read, 200'000) << "txboxctl status read " << read << " outbox rows of " << rows;
  std::cout << "txboxctl status read " << read << " outbox rows of " << rows << '\n';
  EXPECT_EQ(j["outbox"]["pending_exact"], false) << j.dump();
  EXPECT_GT(j["outbox"]["pending"].get<long>(), 100'000) << j.dump();
  EXPECT_GE(j["outbox"]["oldest_pending_age_s"].get<double>(), 0.0) << j.dump();
  EXPECT_EQ(j["outbox"]["shards"].size(), 64u);

  std::string out;
  ASSERT_EQ(run("status", &out), 0) << out;
  EXPECT_NE(out.find("(estimated)"), std::string::npos) << out;
}

// ---------------------------------------------------------------- failures

// A transient database error (here a lock timeout behind a migration's lock) says so and exits
// with its own code (5: nothing changed, retry), not 1 as an operation failure.
TEST_F(Txboxctl, ATransientDatabaseErrorSaysRetryAndExits5) {
  add_outbox_dead(txbox::uuid_v7().str(), "orders", "alpha", "x");
  pqxx::connection locker(endpoints().pg);
  pqxx::work hold(locker);
  pq::exec0(hold, "LOCK TABLE " + schema_ + ".outbox_dead IN ACCESS EXCLUSIVE MODE");
  std::string out;
  const int rc = run_command(
      "PGOPTIONS='-c lock_timeout=300' " + quote(txbox::test::program("txboxctl")) +
          " --database-url " + quote(endpoints().pg) + " --schema " + schema_ + " outbox dead list",
      &out);
  hold.abort();
  EXPECT_EQ(rc, 5) << out;
  EXPECT_NE(out.find("temporary database failure"), std::string::npos) << out;
  EXPECT_NE(out.find("55P03"), std::string::npos) << out;
  EXPECT_NE(out.find("retry"), std::string::npos) << out;
}

// A permanent one (a table missing) exits 1 and prints what to do.
TEST_F(Txboxctl, APermanentDatabaseErrorPrintsTheHint) {
  pq::exec0(pqxx::nontransaction(*conn_), "DROP TABLE " + schema_ + ".outbox_dead");
  std::string out;
  EXPECT_EQ(run("outbox dead list", &out), 1) << out;
  EXPECT_NE(out.find("42P01"), std::string::npos) << out;
  EXPECT_NE(out.find("Hint: apply every migration"), std::string::npos) << out;
}

}  // namespace
