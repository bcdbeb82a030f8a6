// The SQL migrations as a DBA applies them: psql, a non-superuser database owner, twice.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using txbox::test::endpoints;
using txbox::test::run_command;

std::string with_db(const std::string& conninfo, const std::string& db, const std::string& user) {
  return conninfo + " dbname=" + db + " user=" + user;  // later keywords win in libpq
}

std::string apply_all(const std::string& conninfo, int* status) {
  std::string out;
  *status = run_command("for f in '" + txbox::test::source_dir() +
                            "'/migrations/V*__*.sql; do psql -X -q -v ON_ERROR_STOP=1 '" +
                            conninfo + "' -f \"$f\" || exit 1; done",
                        &out);
  return out;
}

TEST(Migrations, ApplyTwiceAsNonSuperuserOwnerChangingNothingTheSecondTime) {
  const std::string owner = txbox::test::unique_name("dba");
  const std::string db = txbox::test::unique_name("db");
  {
    pqxx::connection admin(endpoints().pg_admin);
    pqxx::nontransaction n(admin);
    n.exec("CREATE ROLE " + owner + " LOGIN CREATEROLE NOSUPERUSER");
    n.exec("CREATE DATABASE " + db + " OWNER " + owner);
  }
  const std::string conn = with_db(endpoints().pg_admin, db, owner);
  int status = 0;
  std::string out = apply_all(conn, &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out.find("ERROR"), std::string::npos) << out;

  // pg_dump >= 15.14 writes a random \\restrict token on every run: leave it out.
  const std::string dump_cmd =
      "pg_dump --schema-only --schema=txbox '" + conn + "' | grep -v '^\\\\\\(un\\)\\?restrict'";
  std::string dump1;
  ASSERT_EQ(run_command(dump_cmd, &dump1), 0) << dump1;
  auto counts = [&] {
    pqxx::connection c(conn);
    pqxx::nontransaction n(c);
    const auto row = pq::exec1(
        n,
        "SELECT (SELECT count(*) FROM txbox.schema_version), "
        "(SELECT count(*) FROM txbox.outbox_leases), "
        "(SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles "
        " WHERE rolname IN ('txbox_writer', 'txbox_relay', 'txbox_consumer') AND NOT rolcanlogin)");
    return row[0].as<std::string>() + "/" + row[1].as<std::string>() + "/" +
           row[2].as<std::string>();
  };
  const std::string before = counts();
  EXPECT_EQ(before, "7/64/txbox_consumer,txbox_relay,txbox_writer");

  out = apply_all(conn, &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out.find("ERROR"), std::string::npos) << out;
  std::string dump2;
  ASSERT_EQ(run_command(dump_cmd, &dump2), 0);
  EXPECT_EQ(dump1, dump2);
  EXPECT_EQ(before, counts());

  pqxx::connection c(conn);
  pqxx::nontransaction n(c);
  EXPECT_EQ(pq::exec1(n, "SELECT max(version) FROM txbox.schema_version")[0].as<int>(), 7);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM txbox.outbox_leases")[0].as<int>(), 64);
  EXPECT_FALSE(
      pq::exec1(n, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0].as<bool>());
}

TEST(Migrations, RenderForAnotherSchemaName) {
  const std::string schema = txbox::test::unique_name("custom");
  txbox::test::create_schema(schema);
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction n(c);
  EXPECT_EQ(pq::exec1(n, "SELECT count(*) FROM information_schema.tables WHERE table_schema = " +
                             n.quote(schema))[0]
                .as<int>(),
            9);
  std::string out;
  EXPECT_NE(
      run_command("'" + txbox::test::source_dir() + "/migrations/render.sh' 'bad;name'", &out), 0);
  EXPECT_NE(out.find("usage"), std::string::npos) << out;
}

// Runs `sql` as `user` in a transaction that is rolled back: "" on success, "denied" on
// insufficient privilege, else the error text.
std::string outcome(const std::string& user, const std::string& sql) {
  pqxx::connection c(endpoints().pg + " user=" + user);
  pqxx::work tx(c);
  try {
    tx.exec(sql);
    return "";
  } catch (const pqxx::insufficient_privilege&) {
    return "denied";
  } catch (const pqxx::sql_error& e) {
    return e.what();
  }
}

// Least privilege: a service user granted txbox_writer appends to the outbox and nothing else.
class WriterRole : public ::testing::Test {
 protected:
  void SetUp() override {
    user_ = txbox::test::unique_name("svc");
    pqxx::connection owner(endpoints().pg);
    pqxx::nontransaction n(owner);
    n.exec("CREATE ROLE " + user_ + " LOGIN IN ROLE txbox_writer");
  }
  std::string conn() const { return endpoints().pg + " user=" + user_; }
  std::string try_sql(const std::string& sql) { return outcome(user_, sql); }
  std::string user_;
};

TEST_F(WriterRole, CanEnqueue) {
  pqxx::connection c(conn());
  pqxx::work tx(c);
  EXPECT_NO_THROW(txbox::enqueue(tx, {.topic = "t", .key = "k", .payload = "x"}));
  EXPECT_NO_THROW(tx.commit());
}

TEST_F(WriterRole, IsDeniedEverythingElse) {
  const std::string denied = "denied";
  EXPECT_EQ(try_sql("SELECT * FROM txbox.outbox"), denied);
  EXPECT_EQ(try_sql("DELETE FROM txbox.outbox"), denied);
  EXPECT_EQ(try_sql("UPDATE txbox.outbox SET attempts = 1"), denied);
  EXPECT_EQ(try_sql("SELECT * FROM txbox.outbox_dead"), denied);
  EXPECT_EQ(try_sql("UPDATE txbox.outbox_leases SET owner = 'x'"), denied);
  EXPECT_EQ(try_sql("INSERT INTO txbox.inbox VALUES ('c', 'm', 't', 0, 0)"), denied);
  EXPECT_EQ(try_sql("SELECT * FROM txbox.inbox_offsets"), denied);
  EXPECT_EQ(try_sql("CREATE TABLE txbox.evil (x int)"), denied);
}

TEST(Roles, RelayAndConsumerAreConfinedToTheirTables) {
  const std::string relay = txbox::test::unique_name("relay");
  const std::string consumer = txbox::test::unique_name("cons");
  {
    pqxx::connection owner(endpoints().pg);
    pqxx::nontransaction n(owner);
    n.exec("CREATE ROLE " + relay + " LOGIN IN ROLE txbox_relay");
    n.exec("CREATE ROLE " + consumer + " LOGIN IN ROLE txbox_consumer");
  }
  const auto state = outcome;
  EXPECT_EQ(state(relay, "SELECT count(*) FROM txbox.outbox"), "");
  EXPECT_EQ(state(relay, "DELETE FROM txbox.outbox WHERE false"), "");
  EXPECT_EQ(state(relay, "UPDATE txbox.outbox_leases SET owner = owner WHERE false"), "");
  EXPECT_EQ(state(relay, "SELECT count(*) FROM txbox.inbox"), "denied");
  EXPECT_EQ(state(consumer, "SELECT count(*) FROM txbox.inbox"), "");
  EXPECT_EQ(state(consumer, "SELECT count(*) FROM txbox.inbox_offsets"), "");
  EXPECT_EQ(state(consumer, "SELECT count(*) FROM txbox.outbox"), "denied");
  EXPECT_EQ(state(consumer, "DELETE FROM txbox.outbox_leases"), "denied");
  // V6: the relay's wake-up probe reads the id sequence; writers and consumers need not.
  EXPECT_EQ(state(relay, "SELECT last_value, pg_current_snapshot() FROM txbox.outbox_id_seq"), "");
  EXPECT_EQ(state(relay, "SELECT nextval('txbox.outbox_id_seq')"), "denied");
  EXPECT_EQ(state(consumer, "SELECT last_value FROM txbox.outbox_id_seq"), "denied");
}

// V6 dropped V2's NOTIFY trigger: no trigger is left on the outbox (a trigger that notifies,
// or takes any lock every writer shares, serialises the writers' commits: see
// commit_lock_pgtest for the test of the commit itself).
TEST(Migrations, TheOutboxHasNoTriggerAfterV6) {
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction n(c);
  EXPECT_EQ(pq::exec1(n,
                      "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'txbox.outbox'::regclass "
                      "AND NOT tgisinternal")[0]
                .as<int>(),
            0);
  EXPECT_EQ(pq::exec1(n,
                      "SELECT count(*) FROM pg_proc WHERE proname = 'outbox_notify' "
                      "AND pronamespace = 'txbox'::regnamespace")[0]
                .as<int>(),
            0);
}

}  // namespace
