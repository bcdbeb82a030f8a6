// The shared internals alone: the failure classifier's table, backoff, the interruptible sleep,
// the database contract and the signal guard.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <pqxx/except>
#include <random>
#include <thread>

#include "txbox/detail/backoff.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/detail/kafka_failure.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/detail/signal_guard.hpp"
#include "txbox/error.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::detail::classify;
using txbox::detail::failure_kind;

template <class E>
txbox::detail::failure classify_thrown(E e) {
  return classify(std::make_exception_ptr(std::move(e)));
}

TEST(FailureClassifier, SqlStatesThatRetryingFixes) {
  for (const char* s : {"40001", "40P01", "55P03", "57014", "53300", "53200", "58030", "72000"}) {
    bool reconnect = true;
    EXPECT_EQ(txbox::detail::classify_sqlstate(s, reconnect), failure_kind::db_transient) << s;
    EXPECT_FALSE(reconnect) << s << ": the session is still usable";
  }
  // The session itself is unusable: on a standby after a failover, shut down, timed out.
  for (const char* s : {"25006", "57P01", "57P02", "57P03", "08006", "08001", "25P03", "40003"}) {
    bool reconnect = false;
    EXPECT_EQ(txbox::detail::classify_sqlstate(s, reconnect), failure_kind::db_transient) << s;
    EXPECT_TRUE(reconnect) << s;
  }
}

TEST(FailureClassifier, SqlStatesThatNeedAnOperator) {
  for (const char* s :
       {"42501", "42P01", "42703", "3F000", "28P01", "22P02", "23505", "40002", "XX000", ""}) {
    bool reconnect = true;
    EXPECT_EQ(txbox::detail::classify_sqlstate(s, reconnect), failure_kind::db_permanent) << s;
    EXPECT_FALSE(reconnect) << s;
  }
}

TEST(FailureClassifier, LibpqxxTypes) {
  EXPECT_EQ(classify_thrown(pqxx::broken_connection("gone")).kind, failure_kind::db_transient);
  EXPECT_TRUE(classify_thrown(pqxx::broken_connection("gone")).reconnect);
  EXPECT_TRUE(classify_thrown(pqxx::in_doubt_error("commit?")).reconnect);
  EXPECT_EQ(classify_thrown(pqxx::in_doubt_error("commit?")).kind, failure_kind::db_transient);
  const auto ser = classify_thrown(pq::sql_error_of<pqxx::serialization_failure>("ser", "40001"));
  EXPECT_EQ(ser.kind, failure_kind::db_transient);
  EXPECT_FALSE(ser.reconnect);
  EXPECT_EQ(ser.sqlstate, "40001");
  EXPECT_EQ(classify_thrown(pq::sql_error_of<pqxx::deadlock_detected>("dl", "40P01")).kind,
            failure_kind::db_transient);
  const auto priv = classify_thrown(
      pqxx::insufficient_privilege("ERROR:  permission denied\n", "SELECT 1", "42501"));
  EXPECT_EQ(priv.kind, failure_kind::db_permanent);
  EXPECT_EQ(priv.message, "ERROR:  permission denied");
  EXPECT_NE(priv.hint.find("grant"), std::string::npos) << priv.hint;
  // libpqxx 6.4 throws its subclasses without the SQLSTATE: the type names it.
  const auto typed = classify_thrown(pqxx::insufficient_privilege("denied", "SELECT 1"));
  EXPECT_EQ(typed.sqlstate, "42501");
  EXPECT_EQ(typed.kind, failure_kind::db_permanent);
  EXPECT_EQ(classify_thrown(pqxx::undefined_column("no column")).sqlstate, "42703");
  EXPECT_EQ(classify_thrown(pqxx::out_of_memory("oom")).kind, failure_kind::db_transient);
  const auto ro = classify_thrown(pqxx::sql_error("read-only", "INSERT", "25006"));
  EXPECT_EQ(ro.kind, failure_kind::db_transient);
  EXPECT_TRUE(ro.reconnect);
  EXPECT_EQ(classify_thrown(pqxx::usage_error("misuse")).kind, failure_kind::bug);
  EXPECT_EQ(classify_thrown(pqxx::conversion_error("not an int")).kind, failure_kind::bug);
  EXPECT_EQ(classify_thrown(pqxx::range_error("row 3")).kind, failure_kind::bug);
}

TEST(FailureClassifier, TxboxAndForeignExceptions) {
  EXPECT_EQ(classify_thrown(txbox::config_error("bad")).kind, failure_kind::config);
  EXPECT_EQ(classify_thrown(txbox::schema_error("old")).kind, failure_kind::db_permanent);
  EXPECT_EQ(classify_thrown(txbox::transient_error("later")).kind, failure_kind::db_transient);
  EXPECT_EQ(classify_thrown(std::logic_error("oops")).kind, failure_kind::bug);
  EXPECT_EQ(classify(std::make_exception_ptr(42)).kind, failure_kind::bug);
  try {
    throw pq::sql_error_of<pqxx::deadlock_detected>("dl", "40P01");
  } catch (...) {
    EXPECT_TRUE(txbox::detail::classify_current().transient());
  }
  EXPECT_STREQ(txbox::detail::kind_name(failure_kind::db_permanent), "database permanent");
}

TEST(FailureClassifier, KafkaCodes) {
  using txbox::detail::classify_kafka;
  EXPECT_EQ(classify_kafka(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), failure_kind::kafka_permanent);
  EXPECT_EQ(classify_kafka(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), failure_kind::kafka_transient);
  EXPECT_EQ(classify_kafka(RD_KAFKA_RESP_ERR__TRANSPORT), failure_kind::kafka_transient);
  EXPECT_EQ(classify_kafka(RD_KAFKA_RESP_ERR__FATAL), failure_kind::kafka_fatal);
  EXPECT_EQ(classify_kafka(RD_KAFKA_RESP_ERR__TRANSPORT, true), failure_kind::kafka_fatal);
}

// A connection PostgreSQL or libpq refuses for a reason of configuration (issue 30): the
// texts libpq 15 gives (libpqxx 6.4 throws them as broken_connection, without a SQLSTATE).
constexpr const char* k_at = "connection to server at \"127.0.0.1\", port 5432 failed: ";

TEST(ConnectRefusal, ConfigurationMistakesAreRecognisedWithTheirFix) {
  using txbox::detail::classify_connect_refusal;
  const struct {
    std::string text;
    const char* sqlstate;
    const char* hint;
  } cases[] = {
      {std::string(k_at) + "FATAL:  database \"nope\" does not exist\n", "3D000", "database name"},
      {std::string(k_at) + "FATAL:  password authentication failed for user \"bob\"\n", "28P01",
       "user and password"},
      {std::string(k_at) + "FATAL:  Peer authentication failed for user \"bob\"\n", "28000",
       "pg_hba.conf"},
      {std::string(k_at) + "FATAL:  role \"bob\" does not exist\n", "28000", "create the role"},
      {std::string(k_at) + "FATAL:  role \"bob\" is not permitted to log in\n", "28000", "LOGIN"},
      {std::string(k_at) +
           "FATAL:  no pg_hba.conf entry for host \"10.0.0.1\", user \"bob\", database \"x\", "
           "no encryption\n",
       "28000", "pg_hba.conf"},
      {std::string(k_at) + "fe_sendauth: no password supplied\n", "", "password"},
      {std::string(k_at) + "FATAL:  permission denied for database \"x\"\n", "42501", "CONNECT"},
      {"invalid sslmode value: \"bogus\"\n", "", "database.url"},
      {"invalid channel_binding value: \"x\"\n", "", "database.url"},
      {"invalid integer value \"notaport\" for connection option \"port\"\n", "", "database.url"},
      {"could not match 2 host names to 1 hostaddr values\n", "", "database.url"},
      {"could not parse network address \"abc\": Name or service not known\n", "", "database.url"},
      {std::string(k_at) + "server does not support SSL, but SSL was required\n", "", "sslmode"},
  };
  for (const auto& c : cases) {
    const auto r = classify_connect_refusal(c.text);
    ASSERT_TRUE(r) << c.text;
    EXPECT_EQ(r->sqlstate, c.sqlstate) << c.text;
    EXPECT_NE(r->hint.find(c.hint), std::string::npos) << c.text << " -> " << r->hint;
  }
}

TEST(ConnectRefusal, WhatMayPassByItselfIsNotAConfigurationMistake) {
  for (const std::string& text :
       {std::string(k_at) +
            "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
            "connections?\n",
        std::string(k_at) + "FATAL:  the database system is starting up\n",
        std::string(k_at) + "FATAL:  the database system is shutting down\n",
        std::string(k_at) + "FATAL:  the database system is in recovery mode\n",
        std::string(k_at) + "FATAL:  sorry, too many clients already\n",
        std::string(k_at) +
            "FATAL:  remaining connection slots are reserved for non-replication superuser "
            "connections\n",
        std::string(k_at) + "timeout expired\n",
        std::string("could not translate host name \"db\" to address: Temporary failure in name "
                    "resolution\n"),
        std::string("server closed the connection unexpectedly\n"),
        std::string("FATAL:  terminating connection due to administrator command\n"),
        std::string("gone")}) {
    EXPECT_FALSE(txbox::detail::classify_connect_refusal(text)) << text;
  }
}

TEST(ConnectRefusal, ClassifiedPermanentOnANewConnection) {
  const auto f = classify_thrown(
      pqxx::broken_connection(std::string(k_at) + "FATAL:  database \"nope\" does not exist\n"));
  EXPECT_EQ(f.kind, failure_kind::db_permanent);
  EXPECT_TRUE(f.reconnect);
  EXPECT_EQ(f.sqlstate, "3D000");
  EXPECT_NE(f.hint.find("database name in database.url"), std::string::npos) << f.hint;
}

TEST(ConnectRefusal, AtStartAConfigurationMistakeIsAConfigErrorWithoutThePassword) {
  const std::string url = "host=127.0.0.1 dbname=nope user=bob password=Pw-never-shown";
  try {
    txbox::detail::throw_connect_failure(
        std::string(k_at) + "FATAL:  password authentication failed for user \"bob\"\n", url);
  } catch (const txbox::config_error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find("Pw-never-shown"), std::string::npos) << what;
    EXPECT_EQ(what.find("cannot connect to the database (host=127.0.0.1 dbname=nope user=bob "
                        "password=***): connection to server"),
              0u)
        << what;
    EXPECT_NE(what.find("password authentication failed for user \"bob\". Hint: check the user "
                        "and password in database.url"),
              std::string::npos)
        << what;
  }
  EXPECT_THROW(txbox::detail::throw_connect_failure("invalid sslmode value: \"bogus\"\n", url),
               txbox::config_error);
  try {
    txbox::detail::throw_connect_failure(std::string(k_at) + "Connection refused\n", url,
                                         "is PostgreSQL running?");
  } catch (const txbox::transient_error& e) {
    EXPECT_NE(std::string(e.what()).find("Connection refused. Hint: is PostgreSQL running?"),
              std::string::npos)
        << e.what();
  }
}

TEST(Backoff, DoublesWithJitterWithinBounds) {
  std::mt19937_64 rng(7);
  for (int attempt = 0; attempt < 40; ++attempt) {
    const auto d = txbox::detail::backoff(attempt, 100ms, 5000ms, rng);
    const auto full = std::min<std::int64_t>(100LL << std::min(attempt, 20), 5000);
    EXPECT_GE(d.count(), full / 2) << attempt;
    EXPECT_LE(d.count(), full) << attempt;
  }
  EXPECT_LE(txbox::detail::backoff(-3, 100ms, 5000ms, rng).count(), 100);
}

TEST(Backoff, SleepEndsAtOnceWhenStopped) {
  std::stop_source source;
  std::jthread stopper([&source] {
    std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(txbox::detail::sleep_for(30s, source.get_token()));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(txbox::detail::sleep_for(1ms, std::stop_source().get_token()));
}

TEST(SchemaContract, QuotesOnceAndRefusesInjection) {
  const txbox::detail::schema_name s("orders_box");
  EXPECT_EQ(s.table("outbox"), "\"orders_box\".outbox");
  EXPECT_EQ(s.notify_channel(), "orders_box.outbox");
  EXPECT_THROW(txbox::detail::schema_name("x\"; DROP TABLE y; --"), txbox::config_error);
  EXPECT_THROW(txbox::detail::schema_name(""), txbox::config_error);
  const auto sql = txbox::detail::key_lock_sql("SELECT unnest($1::text[])");
  EXPECT_NE(sql.find("pg_advisory_xact_lock(29816, h)"), std::string::npos) << sql;
  EXPECT_NE(sql.find("ORDER BY 1"), std::string::npos) << sql;
}

struct sigaction current(int sig) {
  struct sigaction now {};
  sigaction(sig, nullptr, &now);
  return now;
}

TEST(SignalGuard, RestoresThePreviousHandlersEvenWhenTheGuardedCodeThrows) {
  const auto before = current(SIGTERM).sa_handler;
  const auto before_int = current(SIGINT).sa_handler;
  try {
    const txbox::detail::signal_guard guard;
    EXPECT_NE(current(SIGTERM).sa_handler, before);
    throw std::runtime_error("the guarded code fails");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(current(SIGTERM).sa_handler, before);
  EXPECT_EQ(current(SIGINT).sa_handler, before_int);
}

TEST(SignalGuard, OneSignalStopsEveryGuardAndOnlyLaterSignalsCount) {
  const auto before = current(SIGTERM).sa_handler;
  {
    txbox::detail::signal_guard a;
    std::stop_source sa;
    a.forward_to(sa);
    {
      txbox::detail::signal_guard b;
      std::stop_source sb;
      b.forward_to(sb);
      std::raise(SIGTERM);
      for (int i = 0; i < 100 && !(sa.stop_requested() && sb.stop_requested()); ++i) {
        std::this_thread::sleep_for(10ms);
      }
      EXPECT_TRUE(sa.stop_requested());
      EXPECT_TRUE(sb.stop_requested());
    }
    // b is gone, a still guards: the handler stays installed.
    EXPECT_NE(current(SIGTERM).sa_handler, before);
    const txbox::detail::signal_guard c;
    EXPECT_FALSE(c.signalled()) << "a guard sees only the signals after it was made";
  }
  EXPECT_EQ(current(SIGTERM).sa_handler, before);
}

}  // namespace
