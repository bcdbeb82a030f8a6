// The PostgreSQL failover tests' helpers: the primary + standby pair that the pgha.servers.start
// fixture started (scripts/servers.sh with TXBOX_TEST_PG_STANDBY=1, scripts/lib/pg_ha.sh), and
// a fixture with a schema, an orders table and an effects table on whichever node is primary.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "http_support.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"

namespace txbox::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// A value of endpoints.env; fails the test (throws) when the pair was not started.
inline std::string pair_value(const std::string& name) {
  const auto it = endpoints().all.find(name);
  if (it == endpoints().all.end() || it->second.empty()) {
    throw std::runtime_error(name +
                             " is not in the endpoints: the servers were not started "
                             "with TXBOX_TEST_PG_STANDBY=1 (ctest fixture pgha.servers)");
  }
  return it->second;
}

/// The servers directory (endpoints.env's TXBOX_TEST_PG_HA_DIR is DIR/pg_ha).
inline std::string servers_dir() {
  const std::string ha = pair_value("TXBOX_TEST_PG_HA_DIR");
  return ha.substr(0, ha.rfind('/'));
}

/// Runs `scripts/servers.sh <command> DIR`; fails the test with its output when it fails.
inline void pair_command(const std::string& command) {
  std::string out;
  const int rc =
      run_command(source_dir() + "/scripts/servers.sh " + command + " " + servers_dir(), &out);
  ASSERT_EQ(rc, 0) << "servers.sh " << command << " failed: " << out;
}

/// "primary N standby M|none".
inline std::string pair_status() {
  std::string out;
  run_command(source_dir() + "/scripts/servers.sh pg-status " + servers_dir(), &out);
  return out;
}

inline std::string multi() {
  return pair_value("TXBOX_TEST_PG_MULTI");
}
inline std::string multi_admin() {
  return pair_value("TXBOX_TEST_PG_MULTI_ADMIN");
}

/// Waits until the standby replayed everything the primary wrote so far (else fails).
inline void wait_standby_caught_up() {
  const auto st = pair_status();
  const auto pos = st.find("standby ");
  ASSERT_NE(pos, std::string::npos) << st;
  const std::string node = st.substr(pos + 8, 1);
  ASSERT_TRUE(node == "0" || node == "1") << "no standby: " << st;
  pqxx::connection p(multi_admin());
  const auto lsn =
      pq::exec1(pqxx::nontransaction(p), "SELECT pg_current_wal_lsn()::text")[0].as<std::string>();
  pqxx::connection s(pair_value("TXBOX_TEST_PG_NODE" + node + "_ADMIN"));
  ASSERT_TRUE(wait_until(
      [&] {
        return pq::exec1(pqxx::nontransaction(s), "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn",
                         lsn)[0]
            .as<bool>();
      },
      20s))
      << "the standby did not catch up with " << lsn;
}

/// A schema with orders(id) and effects(message_id, order_id) tables; orders placed with
/// their outbox message (payload = order id) in one transaction, always on the primary.
class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    heal_pair();
    schema_ = unique_name("pgha");
    topic_ = unique_name("pgha_orders");
    create_schema(schema_);
    create_topic(topic_, 1);
    sql("CREATE TABLE " + schema_ + ".orders (id text PRIMARY KEY)");
    sql("CREATE TABLE " + schema_ + ".effects (message_id text, order_id text)");
    pqxx::connection a(multi_admin());
    pqxx::nontransaction(a).exec("GRANT pg_monitor TO txbox_owner");
  }

  /// A pair left broken by a failed test gets its primary and standby back.
  static void heal_pair() {
    const std::string st = pair_status();
    if (st.find("primary none") != std::string::npos) pair_command("pg-promote");
    if (pair_status().find("standby none") != std::string::npos) pair_command("pg-attach-standby");
    for (const char* n : {"0", "1"}) {
      std::ifstream cut(pair_value("TXBOX_TEST_PG_HA_DIR") + "/node" + n + ".conninfo");
      if (cut) pair_command("pg-reconnect-standby");
    }
    set_synchronous(false);
  }

  /// Makes the primary wait for its standby at every commit (synchronous_standby_names).
  static void set_synchronous(bool on) {
    pqxx::connection a(multi_admin());
    pqxx::nontransaction(a).exec(on ? "ALTER SYSTEM SET synchronous_standby_names = '*'"
                                    : "ALTER SYSTEM RESET synchronous_standby_names");
    pqxx::nontransaction(a).exec("SELECT pg_reload_conf()");
  }

  static void sql(const std::string& statement) {
    pqxx::connection c(multi());
    pqxx::nontransaction(c).exec(statement);
  }
  static long scalar(const std::string& statement) {
    pqxx::connection c(multi());
    return pqxx::nontransaction(c).exec(statement)[0][0].as<long>(0);
  }
  /// A number read on the standby (its owner conninfo).
  static long standby_scalar(const std::string& statement) {
    const auto st = pair_status();
    const auto pos = st.find("standby ");
    pqxx::connection c(pair_value("TXBOX_TEST_PG_NODE" + st.substr(pos + 8, 1)));
    return pqxx::nontransaction(c).exec(statement)[0][0].as<long>(0);
  }
  static std::set<std::string> column(const std::string& statement) {
    pqxx::connection c(multi());
    std::set<std::string> out;
    for (const auto& r : pqxx::nontransaction(c).exec(statement))
      out.insert(r[0].as<std::string>());
    return out;
  }

  /// Places orders prefix-0 .. prefix-(n-1), one transaction each, on the current primary
  /// (retrying a connection that fails while it is being promoted).
  void place_orders(const std::string& prefix, int n) {
    const txbox::Outbox ob({.schema = schema_});
    for (int i = 0; i < n; ++i) {
      const std::string id = prefix + "-" + std::to_string(i);
      const auto until = steady::now() + 20s;
      for (;;) {
        try {
          pqxx::connection c(multi());
          pqxx::work tx(c);
          pq::exec(tx, "INSERT INTO " + schema_ + ".orders (id) VALUES ($1)", id);
          ob.enqueue(tx, txbox::Message{.topic = topic_, .key = id, .payload = id});
          tx.commit();
          break;
        } catch (const pqxx::broken_connection&) {
          if (steady::now() > until) throw;
          std::this_thread::sleep_for(100ms);
        }
      }
    }
  }

  /// Places orders prefix-0 .. prefix-(n-1), then waits until `relay` has published them (30 s)
  /// and the standby has replayed them; else fails the test, with the relay's output.
  void place_published_orders(const std::string& prefix, int n, const Process& relay) {
    place_orders(prefix, n);
    ASSERT_TRUE(wait_until([&] { return pending() == 0; }, 30s)) << relay.output();
    wait_standby_caught_up();
  }

  /// The test's first orders, prefix-0 .. prefix-(n-1): places them, then waits until the
  /// consumer has applied them (n effects, 60 s) and the standby has replayed them; else fails
  /// the test, with the relay's output.
  void place_applied_orders(const std::string& prefix, int n, const Process& relay) {
    place_orders(prefix, n);
    ASSERT_TRUE(wait_until([&] { return effects() == n; }, 60s)) << relay.output();
    wait_standby_caught_up();
  }

  /// Synchronous replication, the standby cut off: an order whose commit waits for the
  /// standby is cancelled (pg_cancel_backend) during the wait. PostgreSQL then ends the wait with
  /// a warning: the commit stays, visible, on the primary only. Replication is asynchronous again
  /// afterwards (the standby stays cut off).
  void place_cancelled_synchronous_order(const std::string& id) {
    set_synchronous(true);
    pair_command("pg-cut-standby");
    pqxx::connection w(multi());
    const int pid = pq::exec1(pqxx::nontransaction(w), "SELECT pg_backend_pid()")[0].as<int>();
    std::string error;
    std::thread writer([&] {
      try {
        pqxx::work tx(w);
        pq::exec(tx, "INSERT INTO " + schema_ + ".orders (id) VALUES ($1)", id);
        txbox::Outbox({.schema = schema_})
            .enqueue(tx, txbox::Message{.topic = topic_, .key = id, .payload = id});
        tx.commit();
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    pqxx::connection a(multi_admin());
    const bool waiting = wait_until(
        [&] {
          return pq::exec(pqxx::nontransaction(a),
                          "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND "
                          "wait_event = 'SyncRep'",
                          pid)
                     .size() == 1;
        },
        10s);
    pq::exec(pqxx::nontransaction(a), "SELECT pg_cancel_backend($1)", pid);
    writer.join();
    set_synchronous(false);
    ASSERT_TRUE(waiting) << "the commit did not wait for the synchronous standby";
    ASSERT_EQ(error, "") << "the cancelled commit failed";
    ASSERT_TRUE(orders().contains(id)) << "the cancelled commit is not visible on the primary";
  }

  long pending() { return scalar("SELECT count(*) FROM " + schema_ + ".outbox"); }
  /// The relay's txbox_relay_standby_held_rows (rows it holds for the standbys).
  double held_rows() const { return metric(http_port_, "txbox_relay_standby_held_rows"); }
  std::set<std::string> orders() { return column("SELECT id FROM " + schema_ + ".orders"); }
  long effects() { return scalar("SELECT count(*) FROM " + schema_ + ".effects"); }
  std::set<std::string> effect_orders() {
    return column("SELECT order_id FROM " + schema_ + ".effects");
  }

  /// The order ids in Kafka (every record of the topic, duplicates folded).
  std::set<std::string> kafka_orders() {
    const std::size_t n = topic_size(topic_);
    std::set<std::string> out;
    for (const auto& r : read_topic(topic_, n, 30s)) out.insert(r.value);
    return out;
  }
  /// Messages in Kafka whose order does not exist on the (new) primary.
  std::set<std::string> phantoms() {
    const auto db = orders();
    std::set<std::string> out;
    for (const auto& id : kafka_orders()) {
      if (!db.contains(id)) out.insert(id);
    }
    return out;
  }

  /// A relay process on the multi-host conninfo, /metrics on `http_port_`.
  std::unique_ptr<Process> start_relay(std::vector<std::string> extra = {},
                                       int lease_ttl_ms = 3000) {
    const std::string path = "/tmp/" + unique_name("pgha_relay") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << multi() << "\"\nschema = \"" << schema_
      << "\"\n[relay]\nlease_ttl_ms = " << lease_ttl_ms
      << "\npoll_interval_ms = 100\nretry_backoff_min_ms = 50\n"
         "retry_backoff_max_ms = 500\n[kafka]\n\"bootstrap.servers\" = \""
      << endpoints().kafka << "\"\n";
    f.close();
    http_port_ = free_port();
    std::vector<std::string> argv = {program("txbox-relay"),
                                     "--config",
                                     path,
                                     "--name",
                                     "pgha-" + schema_,
                                     "--http-listen",
                                     "127.0.0.1:" + std::to_string(http_port_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, "/tmp/" + unique_name("pgha_relay") + ".log");
  }

  /// The inbox consumer's config: multi-host conninfo, short backoff.
  ConsumerConfig consumer_config(const std::string& topic) const {
    ConsumerConfig c;
    c.name = "pgha_" + schema_;
    c.topics = {topic};
    c.database_url = multi();
    c.schema = schema_;
    c.kafka = {{"bootstrap.servers", endpoints().kafka},
               {"session.timeout.ms", "6000"},
               {"heartbeat.interval.ms", "500"}};
    c.batch_wait = 20ms;
    c.retry_backoff_min = 50ms;
    c.retry_backoff_max = 500ms;
    return c;
  }

  /// One effect row per handled message (the order id is the payload).
  Handler record_effect() const {
    const std::string table = schema_ + ".effects";
    return [table](pqxx::work& tx, const ReceivedMessage& m) {
      pq::exec(tx, "INSERT INTO " + table + " (message_id, order_id) VALUES ($1, $2)", m.id,
               m.payload);
    };
  }

  /// `txboxctl status` of this schema on the multi-host conninfo; fails the test unless 0.
  std::string ctl_status() {
    std::string out;
    const int rc = run_command(
        program("txboxctl") + " --database-url '" + multi() + "' --schema " + schema_ + " status",
        &out);
    EXPECT_EQ(rc, 0) << out;
    return out;
  }

  std::string schema_, topic_;
  int http_port_ = 0;
};

/// A consumer running on its own thread; an exception out of run() is recorded (it must not
/// happen: the consumer is never restarted).
class RunningConsumer {
 public:
  RunningConsumer(ConsumerConfig cfg, Handler h)
      : m_consumer(std::move(cfg), std::move(h)), m_thread([this](std::stop_token stop) {
          try {
            m_consumer.run(stop);
          } catch (const std::exception& e) {
            m_error = e.what();
          }
        }) {}
  ~RunningConsumer() {
    m_thread.request_stop();
    m_thread.join();
  }
  RunningConsumer(const RunningConsumer&) = delete;
  RunningConsumer& operator=(const RunningConsumer&) = delete;
  /// Empty while run() has not thrown.
  [[nodiscard]] std::string error() const { return m_error; }

 private:
  Consumer m_consumer;
  std::string m_error;
  std::jthread m_thread;
};

}  // namespace txbox::test
