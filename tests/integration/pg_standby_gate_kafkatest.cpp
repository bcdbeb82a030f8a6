// The standby gate against the WAL streams it must not count and the lag it must live with
// (issue 25): a real pg_receivewal --synchronous streaming beside a cut-off standby must not
// let a round through, by default or with relay.standby_names; and with the standby's
// replication link slowed to 1.5 s of lag under a steady writer, rounds are still published.
// Servers: the pgha.servers fixture (primary + standby + Kafka); part of
// txbox_pg_failover_tests, whose pg_failover_kafkatest.cpp points the harness at the primary.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "delay_proxy.hpp"
#include "pg_failover_support.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::test {
namespace {

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

// The node number ("0" or "1") of the pair's primary or standby.
std::string node_of(const std::string& role) {
  const std::string st = pair_status();
  const auto pos = st.find(role + " ");
  if (pos == std::string::npos) throw std::runtime_error("no " + role + " in: " + st);
  return st.substr(pos + role.size() + 1, 1);
}

std::string state_file(const std::string& name) {
  std::ifstream f(pair_value("TXBOX_TEST_PG_HA_DIR") + "/" + name);
  std::string v;
  std::getline(f, v);
  return v;
}

int primary_port() {
  return std::stoi(state_file("node" + node_of("primary") + ".port"));
}

// The walsender of `application_name` on the primary, flushed at or past its current insert
// position (false: not connected, or behind).
bool streams_and_flushed(const std::string& application_name) {
  pqxx::connection a(pair_value("TXBOX_TEST_PG_NODE" + node_of("primary") + "_ADMIN"));
  return pq::exec(pqxx::nontransaction(a),
                  "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND "
                  "flush_lsn >= pg_current_wal_insert_lsn()",
                  application_name)
             .size() == 1;
}

// pg_receivewal --synchronous (PostgreSQL's binaries of the servers) streaming the primary's
// WAL into a directory of its own, as Barman's streaming archiver does.
class Archiver {
 public:
  explicit Archiver(const std::string& application_name)
      : m_dir(std::filesystem::temp_directory_path() / unique_name("receivewal")) {
    std::filesystem::create_directories(m_dir);
    std::ifstream bindir(servers_dir() + "/pg.bindir");
    std::string bin;
    std::getline(bindir, bin);
    m_process = std::make_unique<Process>(
        std::vector<std::string>{bin + "/pg_receivewal", "--synchronous", "--no-loop", "--verbose",
                                 "-D", m_dir.string(), "-d",
                                 "host=127.0.0.1 port=" + std::to_string(primary_port()) +
                                     " user=postgres application_name=" + application_name},
        m_dir.string() + ".log");
  }
  ~Archiver() {
    m_process.reset();  // SIGKILL: its walsender goes
    std::filesystem::remove_all(m_dir);
  }
  Archiver(const Archiver&) = delete;
  Archiver& operator=(const Archiver&) = delete;
  [[nodiscard]] std::string output() const { return m_process->output(); }

 private:
  std::filesystem::path m_dir;
  std::unique_ptr<Process> m_process;
};

class StandbyGateTest : public FailoverTest {
 protected:
  // The standby cut off, an archiver streaming: 5 orders must be held, not published.
  void expect_held_beside(const Archiver& archiver, const std::string& name, const Process& relay) {
    place_orders("held", 5);
    ASSERT_TRUE(wait_until([&] { return streams_and_flushed(name); }, 20s))
        << "the premise: the archiver flushed the orders' WAL\n"
        << archiver.output();
    EXPECT_TRUE(wait_until([&] { return held_rows() == 5; }, 20s))
        << "held rows " << held_rows() << "\n"
        << relay.output();
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(topic_size(topic_), 1u) << "published with only a WAL archiver streaming:\n"
                                      << relay.output();
    EXPECT_EQ(pending(), 5);
  }
  void expect_published_after_reconnect(const Process& relay) {
    pair_command("pg-reconnect-standby");
    ASSERT_TRUE(wait_until([&] { return pending() == 0; }, 30s)) << relay.output();
    EXPECT_EQ(topic_size(topic_), 6u);
    EXPECT_EQ(held_rows(), 0);
  }
};

// Defect 3 of issue 25: WAL archivers counted as standbys. By default pg_receivewal (its own
// application_name) does not count.
TEST_F(StandbyGateTest, AWalArchiverDoesNotCountAsAStandby) {
  auto relay = start_relay({"--wait-for-standbys", "1"});
  ASSERT_NO_FATAL_FAILURE(place_published_orders("warm", 1, *relay));
  pair_command("pg-cut-standby");
  const Archiver archiver("pg_receivewal");
  ASSERT_NO_FATAL_FAILURE(expect_held_beside(archiver, "pg_receivewal", *relay));
  EXPECT_NE(relay->output().find("not counting pg_receivewal@127.0.0.1 (streaming: a WAL "
                                 "archiver)"),
            std::string::npos)
      << relay->output();
  ASSERT_NO_FATAL_FAILURE(expect_published_after_reconnect(*relay));
}

// relay.standby_names: only the walsenders of those application_names count, so an archiver
// under any name (Barman's barman_receive_wal) does not.
TEST_F(StandbyGateTest, OnlyTheStandbysNamedInStandbyNamesCount) {
  const std::string standby = "node" + node_of("standby");
  auto relay = start_relay({"--wait-for-standbys", "1", "--standby-names", "elsewhere," + standby});
  ASSERT_NO_FATAL_FAILURE(place_published_orders("warm", 1, *relay));
  EXPECT_NE(relay->output().find("standbys: counting " + standby + "@127.0.0.1 (streaming)"),
            std::string::npos)
      << relay->output();
  pair_command("pg-cut-standby");
  const Archiver archiver("barman_receive_wal");
  ASSERT_NO_FATAL_FAILURE(expect_held_beside(archiver, "barman_receive_wal", *relay));
  EXPECT_NE(relay->output().find("not counting barman_receive_wal@127.0.0.1 (streaming: not in "
                                 "relay.standby_names)"),
            std::string::npos)
      << relay->output();
  ASSERT_NO_FATAL_FAILURE(expect_published_after_reconnect(*relay));
}

// Defect 4 of issue 25: with the standby 1.5 s behind and a steady writer, a pass's fresh
// insert position was always one lag ahead and the pass waits at most 1 s: nothing was
// published until the writes stopped. A held round keeps its point and goes once it is flushed.
TEST_F(StandbyGateTest, RoundsArePublishedUnderSustainedStandbyLag) {
  auto relay = start_relay({"--wait-for-standbys", "1"});
  ASSERT_NO_FATAL_FAILURE(place_published_orders("warm", 1, *relay));
  // The standby's replication through a proxy that holds what the primary sends.
  const std::string standby = "node" + node_of("standby");
  const int upstream = primary_port();
  pair_command("pg-cut-standby");  // keeps the standby's primary_conninfo to restore it
  std::string conninfo = state_file(standby + ".conninfo");
  const std::string port = "port=" + std::to_string(upstream);
  const auto at = conninfo.find(port);
  ASSERT_NE(at, std::string::npos) << conninfo;
  DelayProxy proxy(upstream);
  conninfo.replace(at, port.size(), "port=" + std::to_string(proxy.port()));
  {
    // ALTER SYSTEM takes no parameters: the value is quoted by libpq, as psql's :'c' does.
    pqxx::connection s(pair_value("TXBOX_TEST_PG_NODE" + node_of("standby") + "_ADMIN"));
    pqxx::nontransaction tx(s);
    tx.exec("ALTER SYSTEM SET primary_conninfo = " + tx.quote(conninfo));
    tx.exec("SELECT pg_reload_conf()");
  }
  ASSERT_TRUE(wait_until([&] { return streams_and_flushed(standby); }, 30s))
      << "the standby does not stream through the proxy";
  proxy.set_delay(1500ms);

  std::atomic<bool> writing{true};
  std::atomic<int> written{0};
  std::string writer_error;
  std::jthread writer([&] {
    try {
      while (writing) {
        place_orders("lag" + std::to_string(written++), 1);
        std::this_thread::sleep_for(20ms);
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  pqxx::connection a(pair_value("TXBOX_TEST_PG_NODE" + node_of("primary") + "_ADMIN"));
  const auto lag = [&] {
    return pq::exec(
               pqxx::nontransaction(a),
               "SELECT coalesce(extract(epoch FROM flush_lag), 0)::float8 FROM pg_stat_replication "
               "WHERE application_name = $1",
               standby)[0][0]
        .as<double>(0);
  };
  const bool lagging = wait_until([&] { return lag() >= 1.2; }, 20s);
  const auto before = topic_size(topic_);
  const auto since = steady::now();
  const bool published = lagging && wait_until([&] { return topic_size(topic_) > before; }, 10s);
  const double took = seconds_since(since);
  const double lag_after = lag();
  writing = false;
  writer.join();
  std::printf(
      "[ figures  ] standby flush lag %.2f s under a steady writer (%d orders): %s after "
      "%.2f s\n",
      lag_after, written.load(), published ? "published" : "nothing published", took);
  ASSERT_EQ(writer_error, "");
  ASSERT_TRUE(lagging) << "the premise: the standby lags by 1.5 s";
  EXPECT_GE(lag_after, 1.2) << "the premise held through the measurement";
  EXPECT_TRUE(published) << "nothing published within 10 s with the standby 1.5 s behind:\n"
                         << relay->output();

  pair_command("pg-reconnect-standby");  // the direct link again
  ASSERT_TRUE(wait_until([&] { return pending() == 0; }, 60s)) << relay->output();
  EXPECT_EQ(kafka_orders(), orders());
  EXPECT_EQ(metric(http_port_, "txbox_relay_dead_total"), 0);
  EXPECT_TRUE(relay->running());
}

}  // namespace
}  // namespace txbox::test
