// A pipeline on the cluster for one test (see scenario.hpp).
#include "scenario.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <regex>
#include <sstream>

#include "monitor.hpp"
#include "relay_support.hpp"
#include "servers.hpp"

namespace txbox::cluster {
namespace {

using Clock = std::chrono::steady_clock;

std::string conninfo_for(const std::string& base, const std::string& db) {
  // The fixture's conninfo names dbname=txbox; the scenario's database replaces it.
  return std::regex_replace(base, std::regex("dbname=\\S+"), "dbname=" + db);
}

}  // namespace

Scenario::Scenario(const std::string& name, ScenarioOptions o) {
  static_cast<ScenarioOptions&>(m_o) = std::move(o);
  m_db = test::unique_name(name);
  m_o.topic = m_db;
  m_logs = std::filesystem::temp_directory_path().string() + "/txbox-cluster-logs/" + m_db;
  std::filesystem::create_directories(m_logs);
  {
    pqxx::connection admin(test::endpoints().pg_admin);
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + m_db + " OWNER txbox_owner");
  }
  m_pg = conninfo_for(test::endpoints().pg, m_db);
  std::string out;
  const std::string migrate = "cat " + test::source_dir() +
                              "/migrations/V*__*.sql | psql -q -v ON_ERROR_STOP=1 '" + m_pg + "'";
  if (test::run_command(migrate, &out) != 0) throw std::runtime_error("migrations: " + out);
  chaos::create_test_schema(m_pg, m_o.keys);
  create_topic(m_o.topic, m_o.partitions, 3, m_o.topic_configs);

  for (int i = 1; i <= m_o.relays; ++i) {
    m_ports.push_back(test::free_port());
    const std::string relay = fmt::format("relay-{}", i);
    m_relays.push_back(std::make_unique<test::Process>(
        std::vector<std::string>{"/usr/bin/env", "TXBOX_KAFKA_LINGER_MS=20",
                                 test::program("txbox-relay"), "--database-url",
                                 m_pg + " application_name=" + relay, "--kafka-bootstrap-servers",
                                 bootstrap(), "--name", relay, "--http-listen",
                                 fmt::format("127.0.0.1:{}", m_ports.back())},
        m_logs + "/" + relay + ".log"));
  }
  m_consumer = std::make_unique<test::Process>(
      std::vector<std::string>{
          "/usr/bin/env", "CHAOS_PROCESS=consumer-1", TXBOX_PROJECTOR_BIN,
          std::string("consumer.name=") + chaos::k_consumer, "consumer.topics=" + m_o.topic,
          "database.url=" + m_pg + " application_name=consumer-1",
          "kafka.bootstrap.servers=" + bootstrap(), "consumer.retry_backoff_min_ms=50",
          "consumer.retry_backoff_max_ms=1000"},
      m_logs + "/consumer-1.log");
}

Scenario::~Scenario() {
  m_stop = true;
  m_stop_writers = true;
  for (auto& t : m_writers) {
    if (t.joinable()) t.join();
  }
  if (m_sampler.joinable()) m_sampler.join();
  for (auto& r : m_relays) r->signal(SIGTERM);
  m_consumer->signal(SIGTERM);
  for (auto& r : m_relays) r->wait(20s);
  m_consumer->wait(20s);
}

void Scenario::start_writing() {
  chaos::Workload w;
  w.topic = m_o.topic;
  w.seed = std::hash<std::string>{}(m_db);
  w.messages = m_o.messages;
  w.keys = m_o.keys;
  w.writers = 2;
  w.poison = 0;
  w.oversize = 0;
  w.write_seconds = m_o.write_seconds;
  const auto t0 = Clock::now();
  for (int i = 0; i < w.writers; ++i) {
    m_writers.emplace_back(
        [this, w, i, t0] { chaos::run_writer(w, i, m_pg, m_stats, t0, m_stop_writers); });
  }
  m_sampler = std::thread([this] { sample(); });
}

void Scenario::sample() {
  const std::regex line("^txbox_relay_published_total\\{[^}]*\\} ([0-9]+)$");
  while (!m_stop) {
    long total = 0;
    for (std::size_t i = 0; i < m_ports.size(); ++i) {
      std::istringstream body(http(i, "/metrics").second);
      std::string l;
      std::smatch m;
      while (std::getline(body, l)) {
        if (std::regex_match(l, m, line)) total += std::stol(m[1]);
      }
    }
    if (total > m_published) {
      m_published = total;
      std::lock_guard lock(m_mutex);
      m_progress.push_back(Clock::now());
    }
    std::this_thread::sleep_for(50ms);
  }
}

void Scenario::wait_writers(std::chrono::seconds timeout) {
  const auto until = Clock::now() + timeout;
  while (m_stats.done < static_cast<int>(m_writers.size()) && Clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(m_stats.done, static_cast<int>(m_writers.size()))
      << "the writers did not finish in " << timeout.count() << " s";
  ASSERT_TRUE(m_stats.fatal.empty()) << m_stats.fatal;
}

bool Scenario::drain(std::chrono::seconds timeout, std::string& why) {
  chaos::Monitor monitor(m_pg, m_o.topic, m_o.partitions);
  chaos::Kafka kafka(bootstrap());
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (monitor.drained(kafka, why)) return true;
    std::this_thread::sleep_for(250ms);
  }
  return false;
}

chaos::Verdict Scenario::verdict() {
  chaos::Kafka kafka(bootstrap());
  return chaos::verify(m_pg, m_o.topic, kafka.high_watermarks(m_o.topic, m_o.partitions, 10000));
}

void Scenario::mark(const std::string& what) {
  std::lock_guard lock(m_mutex);
  m_marks.push_back(Clock::now());
  std::cout << fmt::format("[cluster] {}: {} (published so far {})\n", m_o.topic, what,
                           m_published.load())
            << std::flush;
}

double Scenario::stall_after(std::size_t i) const {
  std::lock_guard lock(m_mutex);
  if (i >= m_marks.size()) return -1;
  const auto lo = m_marks[i];
  const auto hi = i + 1 < m_marks.size() ? m_marks[i + 1] : Clock::time_point::max();
  auto prev = lo;
  for (const auto t : m_progress) {
    if (t <= lo) prev = t;  // the last progress before the fault
  }
  double longest = -1;  // -1: no progress after the mark at all
  for (const auto t : m_progress) {
    if (t <= lo || t > hi) continue;
    longest = std::max(longest, std::chrono::duration<double>(t - prev).count());
    prev = t;
  }
  return longest;
}

double Scenario::resumed_after(std::size_t i) const {
  std::lock_guard lock(m_mutex);
  if (i >= m_marks.size()) return -1;
  for (const auto t : m_progress) {
    if (t > m_marks[i]) return std::chrono::duration<double>(t - m_marks[i]).count();
  }
  return -1;
}

std::pair<int, std::string> Scenario::http(std::size_t i, const std::string& path) const {
  httplib::Client c("127.0.0.1", m_ports.at(i));
  c.set_connection_timeout(1);
  c.set_read_timeout(2);
  const auto res = c.Get(path.c_str());
  if (!res) return {0, {}};
  return {res->status, res->body};
}

std::string Scenario::relay_log(std::size_t i) const {
  return m_relays.at(i)->output();
}

bool Scenario::all_running() {
  for (auto& r : m_relays) {
    if (!r->running()) return false;
  }
  return m_consumer->running();
}

long Scenario::outbox_rows() const {
  pqxx::connection c(m_pg);
  return pqxx::nontransaction(c).exec("SELECT count(*) FROM txbox.outbox")[0][0].as<long>();
}

long Scenario::outbox_dead_rows() const {
  pqxx::connection c(m_pg);
  return pqxx::nontransaction(c).exec("SELECT count(*) FROM txbox.outbox_dead")[0][0].as<long>();
}

}  // namespace txbox::cluster
