// TLS end to end: txbox-relay and txbox::inbox against PostgreSQL with sslmode=verify-full and a
// Kafka listener that speaks only TLS and requires a client certificate. The servers are
// started with TXBOX_TEST_TLS=1 (scripts/servers.sh generates the certificates with openssl).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "harness.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/error.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::Process;

std::string tls_value(const std::string& name) {
  const auto& all = endpoints().all;
  const auto it = all.find(name);
  if (it == all.end() || it->second.empty()) {
    throw std::runtime_error(name +
                             " is not set: these tests need servers started with "
                             "TXBOX_TEST_TLS=1 scripts/servers.sh start DIR");
  }
  return it->second;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("tls");
    topic_ = txbox::test::unique_name("tls_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 3);
    pg_tls_ = tls_value("TXBOX_TEST_PG_TLS");
    kafka_tls_ = tls_value("TXBOX_TEST_KAFKA_TLS");
    dir_ = tls_value("TXBOX_TEST_TLS_DIR");
    key_password_ = read_file(dir_ + "/client.key.password");
    ASSERT_FALSE(key_password_.empty());
    pqxx::connection c(endpoints().pg);
    pq::exec0(pqxx::nontransaction(c), "CREATE TABLE " + schema_ + ".effects (message_id text)");
  }

  // librdkafka properties for the TLS listener: server verified against `ca`, our client
  // certificate with its encrypted key.
  std::map<std::string, std::string> kafka_tls(const std::string& ca = "ca.pem") const {
    return {{"bootstrap.servers", kafka_tls_},
            {"security.protocol", "ssl"},
            {"ssl.ca.location", dir_ + "/" + ca},
            {"ssl.certificate.location", dir_ + "/client.pem"},
            {"ssl.key.location", dir_ + "/client.key"},
            {"ssl.key.password", key_password_}};
  }

  // A relay config file: the database over `url`, Kafka over TLS with `ca`. Without
  // `key_password_in_file`, the key's password is left to TXBOX_KAFKA_SSL_KEY_PASSWORD.
  std::string relay_config(const std::string& url, const std::string& ca = "ca.pem",
                           bool key_password_in_file = true) const {
    const std::string path = "/tmp/" + txbox::test::unique_name("tls_relay") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << url << "\"\nschema = \"" << schema_
      << "\"\n[relay]\nlease_ttl_ms = 3000\npoll_interval_ms = 200\n[kafka]\n";
    for (const auto& [k, v] : kafka_tls(ca)) {
      if (k != "ssl.key.password" || key_password_in_file)
        f << '"' << k << "\" = \"" << v << "\"\n";
    }
    return path;
  }

  std::unique_ptr<Process> start_relay(const std::string& cfg) const {
    return std::make_unique<Process>(
        std::vector<std::string>{txbox::test::program("txbox-relay"), "--config", cfg, "--name",
                                 "tls", "--log-level", "debug"},
        "/tmp/" + txbox::test::unique_name("tls_relay") + ".log");
  }

  // A consumer of this test's topic over TLS to Kafka and `url` to the database.
  txbox::ConsumerConfig consumer_config(const std::string& name, const std::string& url) const {
    txbox::ConsumerConfig c;
    c.name = name + schema_;
    c.topics = {topic_};
    c.database_url = url;
    c.schema = schema_;
    c.kafka = kafka_tls();
    c.batch_wait = 20ms;
    return c;
  }

  void enqueue(int n) const {
    pqxx::connection c(pg_tls_);
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    for (int i = 0; i < n; ++i) {
      ob.enqueue(tx, {.topic = topic_,
                      .key = "k" + std::to_string(i % 7),
                      .payload = "p" + std::to_string(i)});
    }
    tx.commit();
  }

  long scalar(const std::string& sql) const {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c), sql)[0].as<long>();
  }
  long pending() const { return scalar("SELECT count(*) FROM " + schema_ + ".outbox"); }

  std::string schema_, topic_, pg_tls_, kafka_tls_, dir_, key_password_;
};

TEST_F(TlsTest, RelayAndInboxOverVerifiedTlsDeliverEveryMessageOnce) {
  enqueue(300);
  // application_name lets the test find the relay's backend in pg_stat_ssl.
  const std::string app = txbox::test::unique_name("tls_app");
  // The key's password as operators pass secrets: in the environment, not the file.
  ::setenv("TXBOX_KAFKA_SSL_KEY_PASSWORD", key_password_.c_str(), 1);
  auto relay = start_relay(relay_config(pg_tls_ + " application_name=" + app, "ca.pem", false));
  ::unsetenv("TXBOX_KAFKA_SSL_KEY_PASSWORD");
  ASSERT_TRUE(txbox::test::wait_until([&] { return pending() == 0; }, 60s)) << relay->output();
  EXPECT_EQ(scalar("SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                   "WHERE a.application_name = '" +
                   app + "' AND s.ssl"),
            1)
      << "the relay's database session is not encrypted";

  auto cfg = consumer_config("tls_", pg_tls_);
  const std::string table = schema_ + ".effects";
  txbox::Consumer consumer(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    pq::exec(tx, "INSERT INTO " + table + " (message_id) VALUES ($1)", m.id);
  });
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (consumer.stats().processed < 300 && std::chrono::steady_clock::now() < until) {
    consumer.poll_once(100ms);
  }
  EXPECT_EQ(consumer.stats().processed, 300u);
  EXPECT_EQ(scalar("SELECT count(DISTINCT message_id) FROM " + table), 300);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + table), 300);

  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(15s), 0) << relay->output();
  // The key's password is a secret: never in a log line, even at debug level.
  EXPECT_EQ(relay->output().find(key_password_), std::string::npos) << relay->output();
}

TEST_F(TlsTest, AnUntrustedDatabaseCertificateIsRefusedAndNothingIsLost) {
  enqueue(5);
  const std::string url = pg_tls_ + " sslrootcert=" + dir_ + "/untrusted-ca.pem";
  auto relay = start_relay(relay_config(url));
  EXPECT_TRUE(txbox::test::wait_until(
      [&] { return relay->output().find("certificate verify failed") != std::string::npos; }, 20s))
      << relay->output();
  relay->signal(SIGTERM);
  relay->wait(15s);
  EXPECT_NE(relay->output().find("cannot connect to the database"), std::string::npos)
      << relay->output();
  EXPECT_EQ(pending(), 5) << "rows left the outbox over a connection that failed verification";

  const auto cfg = consumer_config("tls_bad_", url);
  try {
    txbox::Consumer consumer(cfg, [](pqxx::work&, const txbox::ReceivedMessage&) {});
    ADD_FAILURE() << "a consumer connected to a database whose certificate is not trusted";
  } catch (const txbox::error& e) {
    EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos)
        << e.what();
  }
}

TEST_F(TlsTest, AnUntrustedBrokerCertificateIsRefusedAndRowsStayInTheOutbox) {
  enqueue(5);
  auto relay = start_relay(relay_config(pg_tls_, "untrusted-ca.pem"));
  // librdkafka reports the failed handshake; the relay hands nothing over it.
  EXPECT_TRUE(txbox::test::wait_until(
      [&] { return relay->output().find("certificate verify failed") != std::string::npos; }, 30s))
      << relay->output();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(pending(), 5) << relay->output();
  relay->signal(SIGTERM);
  relay->wait(15s);
  EXPECT_EQ(relay->output().find(key_password_), std::string::npos) << relay->output();
  // And the rows are still there for a relay that trusts the broker.
  auto good = start_relay(relay_config(pg_tls_));
  EXPECT_TRUE(txbox::test::wait_until([&] { return pending() == 0; }, 60s)) << good->output();
  EXPECT_EQ(txbox::test::topic_size(topic_), 5u);
}

}  // namespace
