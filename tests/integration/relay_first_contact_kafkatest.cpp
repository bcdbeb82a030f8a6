// Issue 30, "First contact": the first mistakes an operator makes. A relay that cannot reach
// Kafka takes no shard from a healthy one and says it is not ready; a database.url that
// PostgreSQL refuses for a reason of configuration (a database that does not exist, failed
// authentication, an option value libpq refuses) ends the relay at start with exit 3 and the
// fix, never retried in silence; a server that does not answer is still waited for.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <pqxx/pqxx>
#include <regex>
#include <sstream>
#include <thread>

#include "http_support.hpp"
#include "relay_fixture.hpp"
#include "txbox/detail/pq.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::free_port;
using txbox::test::Process;
using txbox::test::read_whole_topic;
using txbox::test::readyz;
using txbox::test::RelayTest;
using clk = std::chrono::steady_clock;

class FirstContact : public RelayTest {
 protected:
  int owned(const std::string& relay) {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c),
                     "SELECT count(*) FROM " + schema_ +
                         ".outbox_leases WHERE owner = $1 AND expires_at > now()",
                     relay)[0]
        .as<int>();
  }

  // Starts a relay on `url` (with a password in it: it must never show) and returns its exit
  // code within 15 s (-1: still running) and how long that took; the output in `out`.
  int exit_code(const std::string& url, std::string& out, long& ms) {
    const auto t0 = clk::now();
    auto r = start_relay("first", config("", url));
    const int code = r->wait(15s);
    ms = std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - t0).count();
    if (code == -1) {
      r->signal(SIGTERM);
      r->wait(15s);
    }
    out = r->output();
    return code;
  }

  // endpoints().pg with `key`'s value replaced (or added).
  static std::string with(const std::string& key, const std::string& value) {
    const std::regex re("(^| )" + key + "=[^ ]*");
    std::string url = endpoints().pg;
    if (std::regex_search(url, re)) return std::regex_replace(url, re, "$1" + key + "=" + value);
    return url + " " + key + "=" + value;
  }

  static constexpr const char* k_secret = "S3cret-never-printed";
};

// Item 2: a relay whose kafka.bootstrap.servers is a closed port, started beside a healthy
// relay, takes no shard: every message goes out within the lease time, and its /readyz says
// 503 (the issue saw it take 32 of 64 shards, stall 29 of 50 messages and say ready).
TEST_F(FirstContact, ARelayThatCannotReachKafkaTakesNoShardAndIsNotReady) {
  const int good_http = free_port();
  const int bad_http = free_port();
  auto good =
      start_relay("good", config(), {"--http-listen", "127.0.0.1:" + std::to_string(good_http)});
  ASSERT_TRUE(txbox::test::wait_until([&] { return owned("good") == 64; }, 30s)) << good->output();

  bootstrap_ = "127.0.0.1:" + std::to_string(free_port());  // nothing listens there
  auto bad =
      start_relay("bad", config(), {"--http-listen", "127.0.0.1:" + std::to_string(bad_http)});
  // Time enough to join and take a fair share (a heartbeat round after joining), and for the
  // healthy relay to hand its extra shards over.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * lease_ttl_ms_));
  ASSERT_TRUE(bad->running()) << bad->output();
  EXPECT_EQ(owned("bad"), 0) << bad->output();

  const auto t0 = clk::now();
  enqueue(50, 10, 5);
  const bool drained = wait_drained(std::chrono::seconds(lease_ttl_ms_ / 1000));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - t0).count();
  std::cout << "50 messages beside a relay without Kafka: " << pending() << " left after " << ms
            << " ms; the bad relay owns " << owned("bad") << " shard(s)\n";
  EXPECT_TRUE(drained) << pending() << " of 50 messages still in the outbox after the lease time";
  EXPECT_EQ(owned("bad"), 0);
  EXPECT_EQ(readyz(bad_http), 503) << bad->output();
  EXPECT_EQ(readyz(good_http), 200) << good->output();
  ASSERT_TRUE(wait_drained(60s));
  EXPECT_EQ(check_stream(read_whole_topic(topic_), 50), 0);

  bad->signal(SIGTERM);
  good->signal(SIGTERM);
  EXPECT_EQ(bad->wait(20s), 0) << bad->output();
  EXPECT_EQ(good->wait(20s), 0) << good->output();
  const std::string log = bad->output();
  EXPECT_NE(log.find("kafka: cannot reach the brokers"), std::string::npos) << log;
  EXPECT_EQ(txbox::test::occurrences(log, "kafka: cannot reach the brokers"), 1) << log;
}

// Item 3 (a): a database that does not exist.
TEST_F(FirstContact, ADatabaseThatDoesNotExistExitsThreeNamingTheFix) {
  std::string out;
  long ms = 0;
  EXPECT_EQ(exit_code(with("dbname", "no_such_db") + " password=" + k_secret, out, ms), 3) << out;
  EXPECT_LT(ms, 5000) << out;
  EXPECT_NE(out.find("database \"no_such_db\" does not exist"), std::string::npos) << out;
  EXPECT_NE(out.find("check the database name in database.url"), std::string::npos) << out;
  EXPECT_EQ(out.find(k_secret), std::string::npos) << out;
  EXPECT_EQ(out.find("retrying"), std::string::npos) << out;
}

// Item 3 (c): a connection option value libpq refuses before it connects.
TEST_F(FirstContact, AnOptionValueLibpqRefusesExitsThreeNamingTheFix) {
  for (const auto& [key, value, text] :
       {std::tuple{"sslmode", "bogus", "invalid sslmode value: \"bogus\""},
        std::tuple{"port", "notaport", "invalid integer value \"notaport\""}}) {
    std::string out;
    long ms = 0;
    EXPECT_EQ(exit_code(with(key, value) + " password=" + k_secret, out, ms), 3) << out;
    EXPECT_LT(ms, 5000) << out;
    EXPECT_NE(out.find(text), std::string::npos) << out;
    EXPECT_NE(out.find("database.url"), std::string::npos) << out;
    EXPECT_EQ(out.find(k_secret), std::string::npos) << out;
  }
}

// pg_hba.conf of the test server with `line` first (atomically, keeping its owner), reloaded.
void hba_first_line(const std::string& line, bool add) {
  pqxx::connection su(endpoints().pg_admin);
  const std::string path =
      pq::exec1(pqxx::nontransaction(su), "SHOW hba_file")[0].as<std::string>();
  std::stringstream old;
  old << std::ifstream(path).rdbuf();
  std::string text = old.str();
  if (add) {
    text = line + "\n" + text;
  } else if (const auto at = text.find(line + "\n"); at != std::string::npos) {
    text.erase(at, line.size() + 1);
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  const std::string tmp = path + ".txbox-test";
  std::ofstream(tmp) << text;
  ASSERT_EQ(::chown(tmp.c_str(), st.st_uid, st.st_gid), 0);
  ASSERT_EQ(::chmod(tmp.c_str(), st.st_mode & 07777), 0);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
  pqxx::nontransaction(su).exec("SELECT pg_reload_conf()");
}

// Item 3 (b): failed authentication. The test server trusts local connections, so a role of
// this test gets a scram-sha-256 line of its own in pg_hba.conf (other roles are untouched);
// a role that does not exist fails authentication under trust too.
TEST_F(FirstContact, FailedAuthenticationExitsThreeWithoutThePassword) {
  const std::string role = txbox::test::unique_name("pwd");
  {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction(c).exec("CREATE ROLE " + role +
                                 " LOGIN PASSWORD 'the-right-one' IN ROLE txbox_relay");
  }
  const std::string hba = "host all " + role + " 127.0.0.1/32 scram-sha-256";
  hba_first_line(hba, true);
  const std::string url = with("user", role);
  // The reload is asynchronous: wait until the role needs its password.
  EXPECT_TRUE(txbox::test::wait_until(
      [&] {
        try {
          pqxx::connection probe(url + " password=wrong");
          return false;
        } catch (const pqxx::broken_connection&) {
          return true;
        }
      },
      10s));
  pqxx::connection works(url + " password=the-right-one");  // the line is in force

  std::string out;
  long ms = 0;
  EXPECT_EQ(exit_code(url + " password=" + k_secret, out, ms), 3) << out;
  hba_first_line(hba, false);
  EXPECT_LT(ms, 5000) << out;
  EXPECT_NE(out.find("password authentication failed for user \"" + role + "\""), std::string::npos)
      << out;
  EXPECT_NE(out.find("check the user and password in database.url"), std::string::npos) << out;
  EXPECT_EQ(out.find(k_secret), std::string::npos) << out;

  EXPECT_EQ(exit_code(with("user", "no_such_role") + " password=" + k_secret, out, ms), 3) << out;
  EXPECT_NE(out.find("role \"no_such_role\" does not exist"), std::string::npos) << out;
  EXPECT_EQ(out.find(k_secret), std::string::npos) << out;
}

// The control: a server that does not answer may be starting; the relay waits for it, not
// ready, and says so again while it waits.
TEST_F(FirstContact, AnUnreachableServerIsStillWaitedFor) {
  const int http = free_port();
  auto r = start_relay("wait", config("", with("port", std::to_string(free_port()))),
                       {"--http-listen", "127.0.0.1:" + std::to_string(http)});
  std::this_thread::sleep_for(3s);
  EXPECT_TRUE(r->running()) << r->output();
  EXPECT_EQ(readyz(http), 503);
  r->signal(SIGTERM);
  EXPECT_EQ(r->wait(15s), 0) << r->output();
  EXPECT_NE(r->output().find("cannot connect to the database"), std::string::npos) << r->output();
}

}  // namespace
