#include "servers.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "process.hpp"

namespace chaos {

std::string Servers::script() {
  return std::string(TXBOX_SOURCE_DIR) + "/scripts/servers.sh";
}

bool Servers::run(const std::string& cmd, const std::string& arg) const {
  std::vector<std::string> argv = {"/bin/bash", script(), cmd, m_dir};
  if (!arg.empty()) argv.push_back(arg);
  // Never adopt servers a user pointed the integration tests at: these get killed.
  std::vector<std::string> extra = m_extra;
  extra.push_back("TXBOX_TEST_KAFKA_BROKERS=" + std::to_string(m_brokers));
  const auto env = environment({"TXBOX_TEST_PG", "TXBOX_TEST_KAFKA", "TXBOX_TEST_PG_ADMIN",
                                "TXBOX_TEST_KAFKA_PARTITIONS", "TXBOX_TEST_KAFKA_BROKERS"},
                               extra);
  return run_logged(argv, env, m_log) == 0;
}

std::map<std::string, std::string> Servers::endpoints() const {
  std::map<std::string, std::string> out;
  std::ifstream in(m_dir + "/endpoints.env");
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string v = line.substr(eq + 1);
    if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') v = v.substr(1, v.size() - 2);
    out[line.substr(0, eq)] = v;
  }
  return out;
}

Guardian::Guardian(const Servers& servers) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  const std::string script = Servers::script();
  const std::string dir = servers.dir();
  const std::string log = servers.log();
  m_pid = ::fork();
  if (m_pid < 0) throw std::runtime_error("fork failed");
  if (m_pid == 0) {
    ::setsid();  // out of the driver's process group: a group kill does not reach it
    ::close(fds[1]);
    char c = 0;
    ssize_t n = 0;
    while ((n = ::read(fds[0], &c, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1 && c == 'd') ::_exit(0);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl("/bin/bash", "bash", script.c_str(), "stop", dir.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(fds[0]);
  m_fd = fds[1];
}

void Guardian::dismiss() {
  if (m_fd < 0) return;
  const char done = 'd';
  if (::write(m_fd, &done, 1) != 1) {
    // Then the guardian stops the servers once more: harmless, they are stopped.
  }
  ::close(m_fd);
  m_fd = -1;
  int status = 0;
  ::waitpid(m_pid, &status, 0);
}

Kafka::Kafka(const std::string& bootstrap) {
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  const auto set = [&](const char* k, const char* v) {
    if (rd_kafka_conf_set(conf.get(), k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(std::string("kafka ") + k + ": " + err);
    }
  };
  set("bootstrap.servers", bootstrap.c_str());
  set("group.id", "chaos-driver");  // never joins: end offsets and admin requests only
  set("enable.auto.commit", "false");
  // The broker goes away on purpose: say nothing about it.
  rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t*, int, const char*, const char*) {});
  rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int, const char*, void*) {});
  m_rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!m_rk) throw std::runtime_error(std::string("rd_kafka_new: ") + err);
  (void)conf.release();  // rd_kafka_new took ownership on success
}

void Kafka::create_topic(const std::string& topic, int partitions, int replication_factor,
                         const std::map<std::string, std::string>& configs) {
  char err[512];
  // Explicit: librdkafka 2.0's -1 does not mean the broker's default.replication.factor.
  txbox::detail::new_topic_ptr nt(
      rd_kafka_NewTopic_new(topic.c_str(), partitions, replication_factor, err, sizeof err));
  if (!nt) throw std::runtime_error(std::string("NewTopic: ") + err);
  for (const auto& [k, v] : configs) {
    if (rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str()) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("NewTopic: cannot set " + k);
    }
  }
  txbox::detail::queue_ptr q(rd_kafka_queue_new(m_rk.get()));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(m_rk.get(), topics, 1, nullptr, q.get());
  txbox::detail::event_ptr ev(rd_kafka_queue_poll(q.get(), 30'000));
  if (!ev) throw std::runtime_error("CreateTopics timed out for " + topic);
  std::size_t n = 0;
  const auto** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto code = rd_kafka_topic_result_error(results[i]);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw std::runtime_error("CreateTopics " + topic + ": " +
                               rd_kafka_topic_result_error_string(results[i]));
    }
  }
  for (int attempt = 0; attempt < 150; ++attempt) {
    if (high_watermarks(topic, partitions, 1000)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw std::runtime_error("topic " + topic + " has no leader after 30 s");
}

namespace {

// The metadata of one topic, or nullptr.
txbox::detail::metadata_ptr topic_metadata(rd_kafka_t* rk, const std::string& topic,
                                           int timeout_ms) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  const auto code = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  txbox::detail::metadata_ptr owned(md);
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) return {};
  return owned;
}

}  // namespace

bool Kafka::fully_replicated(const std::string& topic, int timeout_ms) {
  const auto md = topic_metadata(m_rk.get(), topic, timeout_ms);
  if (!md) return false;
  const auto& t = md->topics[0];
  for (int p = 0; p < t.partition_cnt; ++p) {
    const auto& part = t.partitions[p];
    if (part.leader < 0 || part.isr_cnt != part.replica_cnt) return false;
  }
  return t.partition_cnt > 0;
}

int Kafka::leader(const std::string& topic, int partition, int timeout_ms) {
  const auto md = topic_metadata(m_rk.get(), topic, timeout_ms);
  if (!md) return -1;
  const auto& t = md->topics[0];
  for (int p = 0; p < t.partition_cnt; ++p) {
    if (t.partitions[p].id == partition) return t.partitions[p].leader;
  }
  return -1;
}

std::optional<std::vector<std::int64_t>> Kafka::high_watermarks(const std::string& topic,
                                                                int partitions, int timeout_ms) {
  std::vector<std::int64_t> out;
  for (int p = 0; p < partitions; ++p) {
    std::int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(m_rk.get(), topic.c_str(), p, &lo, &hi, timeout_ms) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::nullopt;
    }
    out.push_back(hi);
  }
  return out;
}

}  // namespace chaos
