// The bad-input matrix: servers that are not there when a relay or consumer starts, connection
// strings that make no sense, and Kafka records that no txbox relay produced (garbage ids,
// tombstones, binary payloads). Each must give a clear error or a defined outcome, and lose
// nothing.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <pqxx/pqxx>
#include <thread>

#include "harness.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/error.hpp"
#include "txbox/inbox.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
using txbox::test::Process;

// A TCP forwarder on 127.0.0.1:`port` to 127.0.0.1:`target`, listening only once started: a
// server that is down, then comes up.
class Forwarder {
 public:
  Forwarder(int port, int target) : m_port(port), m_target(target) {}
  ~Forwarder() { stop(); }
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  void start() {
    m_listen = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(m_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in a = loopback(m_port);
    if (::bind(m_listen, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(m_listen, 64) != 0) {
      throw std::runtime_error("forwarder: cannot listen on port " + std::to_string(m_port));
    }
    m_running = true;
    m_acceptor = std::thread([this] { accept_loop(); });
  }

  void stop() {
    if (!m_running.exchange(false)) return;
    ::shutdown(m_listen, SHUT_RDWR);
    m_acceptor.join();
    ::close(m_listen);
    for (auto& t : m_pipes) t.join();
  }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    return a;
  }

  void accept_loop() {
    while (m_running) {
      const int client = ::accept(m_listen, nullptr, nullptr);
      if (client < 0) return;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      const sockaddr_in a = loopback(m_target);
      if (::connect(server, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      m_pipes.emplace_back([this, client, server] { pipe(client, server); });
    }
  }

  // Copies bytes both ways until either side closes or the forwarder stops.
  void pipe(int a, int b) {
    char buf[65536];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    while (m_running) {
      if (::poll(fds, 2, 200) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        done = n <= 0 || ::write(fds[1 - i].fd, buf, static_cast<std::size_t>(n)) != n;
      }
      if (done) break;
    }
    ::close(a);
    ::close(b);
  }

  int m_port, m_target;
  int m_listen = -1;
  std::atomic<bool> m_running{false};
  std::thread m_acceptor;
  std::vector<std::thread> m_pipes;
};

int port_of(const std::string& text, const std::string& pattern) {
  const auto pos = text.find(pattern);
  if (pos == std::string::npos) throw std::runtime_error("no '" + pattern + "' in " + text);
  return std::stoi(text.substr(pos + pattern.size()));
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("bad");
    topic_ = txbox::test::unique_name("bad_topic");
    txbox::test::create_schema(schema_);
    txbox::test::create_topic(topic_, 2);
    pqxx::connection c(endpoints().pg);
    pq::exec0(
        pqxx::nontransaction(c),
        "CREATE TABLE " + schema_ + ".effects (message_id text, payload bytea, has_key bool)");
  }

  std::string relay_config(const std::string& url, const std::string& bootstrap) const {
    const std::string path = "/tmp/" + txbox::test::unique_name("bad_relay") + ".toml";
    std::ofstream f(path);
    f << "[database]\nurl = \"" << url << "\"\nschema = \"" << schema_
      << "\"\n[relay]\nlease_ttl_ms = 3000\npoll_interval_ms = 200\n[kafka]\n"
      << "\"bootstrap.servers\" = \"" << bootstrap << "\"\n";
    return path;
  }

  std::unique_ptr<Process> start_relay(const std::string& cfg, int http_port) const {
    return std::make_unique<Process>(
        std::vector<std::string>{txbox::test::program("txbox-relay"), "--config", cfg, "--name",
                                 "bad", "--http-listen", "127.0.0.1:" + std::to_string(http_port)},
        "/tmp/" + txbox::test::unique_name("bad_relay") + ".log");
  }

  void enqueue(int n) const {
    pqxx::connection c(endpoints().pg);
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(c);
    for (int i = 0; i < n; ++i) {
      ob.enqueue(tx, {.topic = topic_, .key = "k" + std::to_string(i % 3), .payload = "p"});
    }
    tx.commit();
  }

  long scalar(const std::string& sql) const {
    pqxx::connection c(endpoints().pg);
    return pq::exec1(pqxx::nontransaction(c), sql)[0].as<long>();
  }
  long pending() const { return scalar("SELECT count(*) FROM " + schema_ + ".outbox"); }

  // /readyz's status, or 0 if the relay does not answer.
  static int readyz(int port) {
    httplib::Client http("127.0.0.1", port);
    http.set_connection_timeout(1);
    const auto res = http.Get("/readyz");
    return res ? res->status : 0;
  }

  txbox::ConsumerConfig consumer_config() const {
    txbox::ConsumerConfig c;
    c.name = "bad_" + schema_;
    c.topics = {topic_};
    c.database_url = endpoints().pg;
    c.schema = schema_;
    c.kafka = {{"bootstrap.servers", endpoints().kafka}};
    c.batch_wait = 20ms;
    return c;
  }

  std::string schema_, topic_;
};

TEST_F(BadInputTest, RelayStartedBeforeItsDatabaseWaitsNotReadyThenDelivers) {
  enqueue(20);
  const int pg_port = port_of(endpoints().pg, "port=");
  const int proxy = txbox::test::free_port();
  const int http = txbox::test::free_port();
  std::string url = endpoints().pg;
  url.replace(url.find("port=") + 5, std::to_string(pg_port).size(), std::to_string(proxy));
  Forwarder db(proxy, pg_port);
  auto relay = start_relay(relay_config(url, endpoints().kafka), http);
  ASSERT_TRUE(txbox::test::wait_until(
      [&] { return relay->output().find("cannot connect to the database") != std::string::npos; },
      20s))
      << relay->output();
  EXPECT_TRUE(txbox::test::wait_until([&] { return readyz(http) == 503; }, 10s))
      << "the relay should answer /readyz with 503 while its database is down";
  EXPECT_EQ(pending(), 20);
  db.start();
  EXPECT_TRUE(txbox::test::wait_until([&] { return pending() == 0; }, 60s)) << relay->output();
  EXPECT_TRUE(txbox::test::wait_until([&] { return readyz(http) == 200; }, 10s));
  EXPECT_EQ(txbox::test::topic_size(topic_), 20u);
  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(20s), 0) << relay->output();
}

TEST_F(BadInputTest, RelayStartedBeforeItsBrokerWaitsNotReadyThenDelivers) {
  enqueue(20);
  const int kafka_port = port_of(endpoints().kafka, ":");
  const int proxy = txbox::test::free_port();
  const int http = txbox::test::free_port();
  Forwarder broker(proxy, kafka_port);
  auto relay =
      start_relay(relay_config(endpoints().pg, "127.0.0.1:" + std::to_string(proxy)), http);
  EXPECT_TRUE(txbox::test::wait_until([&] { return readyz(http) == 503; }, 20s))
      << "the relay should answer /readyz with 503 while no broker answers\n"
      << relay->output();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(pending(), 20) << "rows left the outbox with no broker to take them";
  broker.start();
  EXPECT_TRUE(txbox::test::wait_until([&] { return pending() == 0; }, 60s)) << relay->output();
  EXPECT_TRUE(txbox::test::wait_until([&] { return readyz(http) == 200; }, 10s));
  EXPECT_EQ(txbox::test::topic_size(topic_), 20u);
  relay->signal(SIGTERM);
  EXPECT_EQ(relay->wait(20s), 0) << relay->output();
}

TEST_F(BadInputTest, ConnectionStringsLibpqCannotParseAreConfigErrorsWithoutThePassword) {
  const std::string secret = "n0t-in-any-log";
  for (const std::string& url :
       {"postgresql://user:" + secret + "@[::1/db", "host=127.0.0.1 password=" + secret + " 'x",
        "this is not a conninfo password=" + secret}) {
    auto relay = start_relay(relay_config(url, endpoints().kafka), txbox::test::free_port());
    EXPECT_EQ(relay->wait(20s), 3) << url << "\n" << relay->output();
    EXPECT_NE(relay->output().find("database.url is not a valid connection string"),
              std::string::npos)
        << relay->output();
    EXPECT_EQ(relay->output().find(secret), std::string::npos) << relay->output();

    auto cfg = consumer_config();
    cfg.database_url = url;
    try {
      txbox::Consumer consumer(cfg, [](pqxx::work&, const txbox::ReceivedMessage&) {});
      ADD_FAILURE() << "a consumer started with database_url '" << url << "'";
    } catch (const txbox::config_error& e) {
      EXPECT_NE(std::string(e.what()).find("database.url is not a valid connection string"),
                std::string::npos)
          << e.what();
      EXPECT_EQ(std::string(e.what()).find(secret), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected txbox::config_error, got: " << e.what();
    }
  }
}

// Values libpq only checks when it connects: a configuration error (issue 30), the relay exits
// 3 at once with the reason on one line, and the consumer throws config_error; the rows stay.
TEST_F(BadInputTest, ConnectionOptionValuesLibpqRefusesAreConfigErrorsAndLoseNothing) {
  enqueue(3);
  for (const std::string url :
       {"host=127.0.0.1 port=notaport dbname=txbox", "host=127.0.0.1 sslmode=sometimes"}) {
    auto relay = start_relay(relay_config(url, endpoints().kafka), txbox::test::free_port());
    EXPECT_EQ(relay->wait(20s), 3) << url << "\n" << relay->output();
    const std::string out = relay->output();
    EXPECT_EQ(txbox::test::occurrences(out, "cannot connect to the database"), 1) << out;
    EXPECT_NE(out.find("invalid"), std::string::npos) << out;
    EXPECT_NE(out.find("Hint: fix that option in database.url"), std::string::npos) << out;
    EXPECT_EQ(out.find("\n;"), std::string::npos) << "a libpq message broke the log line: " << out;

    auto cfg = consumer_config();
    cfg.database_url = url;
    try {
      txbox::Consumer consumer(cfg, [](pqxx::work&, const txbox::ReceivedMessage&) {});
      ADD_FAILURE() << "a consumer started with database_url '" << url << "'";
    } catch (const txbox::config_error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected txbox::config_error, got: " << e.what();
    }
  }
  EXPECT_EQ(pending(), 3);
}

// A record for `produce`: ce_id bytes (nullopt: no header), key, value (nullopt: tombstone).
using Headers = std::vector<std::pair<std::string, std::optional<std::string>>>;
struct Raw {
  std::optional<std::string> id;
  std::optional<std::string> key;
  std::optional<std::string> value;
  Headers headers;
};
Raw raw(std::optional<std::string> id, std::optional<std::string> key,
        std::optional<std::string> value, Headers headers = {}) {
  return {std::move(id), std::move(key), std::move(value), std::move(headers)};
}

void produce(const std::string& topic, const std::vector<Raw>& records) {
  char err[512];
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  txbox::detail::kafka_ptr p(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  ASSERT_TRUE(p) << err;
  for (const auto& r : records) {
    txbox::detail::headers_ptr hdrs(rd_kafka_headers_new(4));
    if (r.id) rd_kafka_header_add(hdrs.get(), "ce_id", -1, r.id->data(), r.id->size());
    for (const auto& [name, value] : r.headers) {
      rd_kafka_header_add(hdrs.get(), name.data(), static_cast<ssize_t>(name.size()),
                          value ? value->data() : nullptr, value ? value->size() : 0);
    }
    const void* key = r.key ? r.key->data() : nullptr;
    const std::size_t key_len = r.key ? r.key->size() : 0;
    void* value = r.value ? const_cast<char*>(r.value->data()) : nullptr;
    const std::size_t value_len = r.value ? r.value->size() : 0;
    const auto e = rd_kafka_producev(
        p.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()), RD_KAFKA_V_END);
    ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
    (void)hdrs.release();  // owned by the message now
  }
  ASSERT_EQ(rd_kafka_flush(p.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST_F(BadInputTest, RecordsNoTxboxRelayProducedAreEachHandledOnce) {
  using namespace std::string_literals;
  const std::vector<Raw> records = {
      raw("\xff\xfe not utf-8"s, "k", "invalid UTF-8 id"),
      raw("same\0prefix-1"s, "k", "id with NUL 1"),
      raw("same\0prefix-2"s, "k", "id with NUL 2"),
      raw(std::string(10'000, 'x'), "k", "10 kB id"),
      raw(""s, "k", "empty id"),
      raw(std::nullopt, std::nullopt, std::nullopt),  // a tombstone without key or id
      raw("binary", "\x00\xff"s, "\x00\x01\xff\xfe truncated"s),
      raw("null-header", "k", "v", {{"x", std::nullopt}}),
      raw("bad-header", "k", "v", {{"\xff", "\xfe\x00"s}}),
      raw("throws", "k", "the handler throws bytes that are not text"),
      raw("ok", "k", "a well-formed record after the garbage"),
  };

  produce(topic_, records);
  // The same garbage ids again (a producer re-sending them): each is a duplicate.
  produce(topic_, {records[0], records[1], records[3]});

  const std::string table = schema_ + ".effects";
  auto cfg = consumer_config();
  cfg.max_attempts = 2;
  cfg.retry_backoff_min = cfg.retry_backoff_max = 20ms;
  txbox::Consumer consumer(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
    if (m.id == "throws") throw std::runtime_error("\xff\xfe not text");
    pq::exec(tx, "INSERT INTO " + table + " (message_id, payload, has_key) VALUES ($1, $2, $3)",
             m.id, pq::binary(m.payload), m.key.has_value());
  });
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (consumer.stats().processed + consumer.stats().duplicates + consumer.stats().dead < 14 &&
         std::chrono::steady_clock::now() < until) {
    consumer.poll_once(100ms);
  }
  // Ids that are not text dedupe by their bytes; an id over 512 bytes by the record's
  // position, so its re-sent copy (a new record) is processed again.
  EXPECT_EQ(consumer.stats().processed, 11u);
  EXPECT_EQ(consumer.stats().duplicates, 2u);
  EXPECT_EQ(consumer.stats().dead, 1u);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + table), 11);
  EXPECT_EQ(scalar("SELECT count(DISTINCT message_id) FROM " + table), 11);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + schema_ +
                   ".inbox_dead WHERE message_id = 'throws' AND "
                   "position('\\xff\\xfe not text' IN error) > 0"),
            1);
  EXPECT_EQ(scalar("SELECT count(*) FROM " + table +
                   " WHERE payload = decode('0001fffe207472756e6361746564', 'hex')"),
            1)
      << "the binary payload must arrive byte for byte";
  EXPECT_EQ(scalar("SELECT max(next_offset) FROM " + schema_ + ".inbox_offsets"), 14);
}

}  // namespace
