#include "harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>

#include "txbox/detail/rdkafka.hpp"

namespace txbox::test {
namespace {

std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the test servers' endpoints from " + path);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
      value = value.substr(1, value.size() - 2);
    }
    out[line.substr(0, eq)] = value;
  }
  return out;
}

Endpoints load_endpoints() {
  Endpoints e;
  if (const char* file = std::getenv("TXBOX_TEST_ENV_FILE"); file && *file) {
    e.all = read_env_file(file);
  }
  for (const char* name : {"TXBOX_TEST_PG", "TXBOX_TEST_PG_ADMIN", "TXBOX_TEST_KAFKA"}) {
    if (const char* v = std::getenv(name); v && *v) e.all[name] = v;
  }
  e.pg = e.all["TXBOX_TEST_PG"];
  e.pg_admin = e.all["TXBOX_TEST_PG_ADMIN"];
  e.kafka = e.all["TXBOX_TEST_KAFKA"];
  if (e.pg.empty() || e.kafka.empty()) {
    throw std::runtime_error(
        "no test servers: set TXBOX_TEST_PG and TXBOX_TEST_KAFKA, or run the tests through "
        "ctest, which starts them with scripts/servers.sh");
  }
  if (e.pg_admin.empty()) e.pg_admin = e.pg;
  return e;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

detail::kafka_ptr admin_client() {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  if (rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err,
                        sizeof err) != RD_KAFKA_CONF_OK) {
    throw std::runtime_error(err);
  }
  // rd_kafka_new takes ownership of conf only on success.
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(std::string("rd_kafka_new: ") + err);
  conf.release();
  return rk;
}

}  // namespace

const Endpoints& endpoints() {
  static const Endpoints e = load_endpoints();
  return e;
}

std::string unique_name(std::string_view prefix) {
  static std::atomic<int> counter{0};
  std::string out;
  for (char c : prefix) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : '_');
  }
  return out + "_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
}

std::string source_dir() {
  return TXBOX_SOURCE_DIR;
}

int run_command(const std::string& command, std::string* output) {
  const std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf{};
  std::string out;
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void create_schema(const std::string& name) {
  std::string out;
  const std::string cmd = shell_quote(source_dir() + "/migrations/render.sh") + " " + name +
                          " | psql -q -v ON_ERROR_STOP=1 " + shell_quote(endpoints().pg);
  if (run_command(cmd, &out) != 0) {
    throw std::runtime_error("applying migrations to schema " + name + " failed: " + out);
  }
}

void create_topic(const std::string& topic, int partitions) {
  auto rk = admin_client();
  char err[512];
  detail::new_topic_ptr nt(rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err));
  if (!nt) throw std::runtime_error(std::string("NewTopic: ") + err);
  detail::queue_ptr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(rk.get(), topics, 1, nullptr, q.get());
  detail::event_ptr ev(rd_kafka_queue_poll(q.get(), 30000));
  if (!ev) throw std::runtime_error("CreateTopics timed out for " + topic);
  const auto* res = rd_kafka_event_CreateTopics_result(ev.get());
  size_t cnt = 0;
  const auto** results = rd_kafka_CreateTopics_result_topics(res, &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    const auto code = rd_kafka_topic_result_error(results[i]);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw std::runtime_error("CreateTopics " + topic + ": " +
                               rd_kafka_topic_result_error_string(results[i]));
    }
  }
  // Wait until every partition has a leader.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    const auto code = rd_kafka_metadata(rk.get(), 0, t, &md, 5000);
    rd_kafka_topic_destroy(t);
    detail::metadata_ptr owned(md);
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
        md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topics[0].partition_cnt == partitions) {
      bool leaders = true;
      for (int p = 0; p < partitions; ++p) leaders &= md->topics[0].partitions[p].leader >= 0;
      if (leaders) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("topic " + topic + " has no leader after 10 s");
}

Process::Process(const std::vector<std::string>& argv, const std::string& log_path)
    : m_log(log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  m_pid = ::fork();
  if (m_pid < 0) throw std::runtime_error("fork failed");
  if (m_pid == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(m_pid, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

void Process::signal(int sig) {
  ::kill(m_pid, sig);
}

bool Process::running() {
  if (m_status >= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(m_pid, &status, WNOHANG);
  if (r == m_pid) {
    m_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return m_status;
}

std::string Process::output() const {
  std::ifstream in(m_log);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string program(const std::string& name) {
  if (name == "txboxctl") return std::string(TXBOX_CTL_BIN_DIR) + "/" + name;
  return std::string(TXBOX_BIN_DIR) + "/" + name;
}

Record record_of(rd_kafka_message_t& m, const std::string& topic) {
  Record r;
  r.topic = topic;
  if (m.key) r.key.assign(static_cast<const char*>(m.key), m.key_len);
  if (m.payload) r.value.assign(static_cast<const char*>(m.payload), m.len);
  r.partition = m.partition;
  r.offset = m.offset;
  rd_kafka_headers_t* h = nullptr;
  if (rd_kafka_message_headers(&m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* val = nullptr;
    size_t len = 0;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; ++i) {
      r.headers[name] = std::string(static_cast<const char*>(val), len);
    }
  }
  return r;
}

std::vector<Record> collect_records(rd_kafka_t* consumer, const std::string& topic,
                                    std::size_t count, std::chrono::milliseconds timeout) {
  std::vector<Record> out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count && std::chrono::steady_clock::now() < until) {
    detail::message_ptr m(rd_kafka_consumer_poll(consumer, 200));
    if (!m || m->err) continue;
    out.push_back(record_of(*m, topic));
  }
  rd_kafka_consumer_close(consumer);
  std::stable_sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

std::vector<Record> read_topic(const std::string& topic, std::size_t count,
                               std::chrono::milliseconds timeout) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "group.id", unique_name("reader").c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "enable.auto.commit", "false", err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();
  rd_kafka_poll_set_consumer(rk.get());
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  const auto code = rd_kafka_metadata(rk.get(), 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  detail::metadata_ptr owned(md);
  if (code || md->topic_cnt != 1) throw std::runtime_error("no metadata for " + topic);
  detail::partition_list_ptr parts(rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt));
  for (int p = 0; p < md->topics[0].partition_cnt; ++p) {
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk.get(), parts.get());
  return collect_records(rk.get(), topic, count, timeout);
}

void ServersEnvironment::SetUp() {
  try {
    pqxx::connection c(endpoints().pg);
    pqxx::nontransaction(c).exec("SELECT 1");
    auto rk = admin_client();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (true) {
      const rd_kafka_metadata_t* md = nullptr;
      const auto code = rd_kafka_metadata(rk.get(), 1, nullptr, &md, 5000);
      detail::metadata_ptr owned(md);
      if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt > 0) break;
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("Kafka at " + endpoints().kafka +
                                 " served no metadata within 60 s: " + rd_kafka_err2str(code));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FATAL: test servers unusable: %s\n", e.what());
    std::exit(1);
  }
}

}  // namespace txbox::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new txbox::test::ServersEnvironment);
  return RUN_ALL_TESTS();
}
