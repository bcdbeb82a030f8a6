// The cluster's faults and metadata (see cluster.hpp).
#include "cluster.hpp"

#include <algorithm>
#include <fstream>
#include <thread>

#include "harness.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::cluster {
namespace {

std::string dir() {
  const auto& all = test::endpoints().all;
  const auto it = all.find("TXBOX_TEST_KAFKA_DIR");
  const auto brokers = all.find("TXBOX_TEST_KAFKA_BROKERS");
  if (it == all.end() || brokers == all.end() || brokers->second != "3") {
    throw std::runtime_error(
        "the cluster tests need the 3-broker cluster (TXBOX_TEST_KAFKA_BROKERS=3 "
        "scripts/servers.sh start DIR, as the cluster.servers.start fixture runs it)");
  }
  return it->second;
}

detail::kafka_ptr client() {
  char err[512];
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", bootstrap()},
           {"allow.auto.create.topics", "false"},
           {"log_level", "2"},  // brokers are killed on purpose: keep their errors quiet
           {"topic.metadata.refresh.interval.ms", "1000"}}) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(err);
    }
  }
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took it
  return rk;
}

}  // namespace

std::string bootstrap() {
  return test::endpoints().kafka;
}

void node(const std::string& cmd, int n) {
  std::string out;
  const std::string line =
      test::source_dir() + "/scripts/servers.sh " + cmd + " '" + dir() + "' " + std::to_string(n);
  if (test::run_command(line, &out) != 0) {
    throw std::runtime_error("servers.sh " + cmd + " " + std::to_string(n) + " failed: " + out);
  }
}

void restore_all() {
  for (int n = 1; n <= 3; ++n) {
    std::string out;
    const std::string d = dir();
    const std::string pid = d + "/kafka-" + std::to_string(n) + ".pid";
    // A pid file means the node was started and not stopped: it may only be paused.
    if (test::run_command("test -f '" + pid + "'") == 0) {
      test::run_command(test::source_dir() + "/scripts/servers.sh node-resume '" + d + "' " +
                        std::to_string(n));
    } else {
      node("node-start", n);
    }
  }
  auto rk = client();
  for (int i = 0; i < 600; ++i) {
    const rd_kafka_metadata_t* md = nullptr;
    const auto code = rd_kafka_metadata(rk.get(), 0, nullptr, &md, 2000);
    const detail::metadata_ptr owned(md);
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt == 3) return;
    std::this_thread::sleep_for(100ms);
  }
  throw std::runtime_error("the cluster's three brokers are not all back after 60 s");
}

void create_topic(const std::string& topic, int partitions, int rf,
                  const std::map<std::string, std::string>& configs) {
  auto rk = client();
  char err[512];
  detail::new_topic_ptr nt(rd_kafka_NewTopic_new(topic.c_str(), partitions, rf, err, sizeof err));
  if (!nt) throw std::runtime_error(std::string("NewTopic: ") + err);
  for (const auto& [k, v] : configs) {
    if (rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str()) != 0) {
      throw std::runtime_error("NewTopic: cannot set " + k);
    }
  }
  detail::queue_ptr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(rk.get(), topics, 1, nullptr, q.get());
  detail::event_ptr ev(rd_kafka_queue_poll(q.get(), 30000));
  if (!ev) throw std::runtime_error("CreateTopics timed out for " + topic);
  std::size_t n = 0;
  const auto** res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  for (std::size_t i = 0; i < n; ++i) {
    if (rd_kafka_topic_result_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("CreateTopics " + topic + ": " +
                               rd_kafka_topic_result_error_string(res[i]));
    }
  }
  if (!wait_partitions(topic, fully_in_sync, 30s)) {
    throw std::runtime_error("topic " + topic + " has no leader or full ISR after 30 s");
  }
}

namespace {

// One metadata request, to whichever broker the client asks first: empty when it does not
// know the topic (yet: a new topic's metadata reaches the brokers one by one).
std::vector<PartitionState> describe_once(const std::string& topic,
                                          std::chrono::milliseconds timeout) {
  auto rk = client();
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  const auto code = rd_kafka_metadata(rk.get(), 0, t, &md, static_cast<int>(timeout.count()));
  rd_kafka_topic_destroy(t);
  const detail::metadata_ptr owned(md);
  std::vector<PartitionState> out;
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) return out;
  const auto& tm = md->topics[0];
  out.resize(static_cast<std::size_t>(tm.partition_cnt));
  for (int i = 0; i < tm.partition_cnt; ++i) {
    const auto& p = tm.partitions[i];
    auto& s = out.at(static_cast<std::size_t>(p.id));
    s.leader = p.leader;
    s.replicas.assign(p.replicas, p.replicas + p.replica_cnt);
    s.isr.assign(p.isrs, p.isrs + p.isr_cnt);
  }
  return out;
}

}  // namespace

std::vector<PartitionState> describe(const std::string& topic, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    auto parts = describe_once(topic, std::max(left, std::chrono::milliseconds(1)));
    if (!parts.empty() || std::chrono::steady_clock::now() >= until) return parts;
    std::this_thread::sleep_for(100ms);
  }
}

bool wait_partitions(const std::string& topic,
                     const std::function<bool(const PartitionState&)>& pred,
                     std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    const auto parts = describe(topic, 2s);
    bool all = !parts.empty();
    for (const auto& p : parts) all = all && pred(p);
    if (all) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

std::map<int, std::int64_t> checkpointed_offsets(int n, const std::string& topic) {
  // Version, count, then "topic partition offset" lines.
  std::ifstream in(dir() + "/kafka-" + std::to_string(n) + "/data/replication-offset-checkpoint");
  std::map<int, std::int64_t> out;
  std::string t;
  int p = 0;
  std::int64_t offset = 0;
  std::string version, count;
  std::getline(in, version);
  std::getline(in, count);
  while (in >> t >> p >> offset) {
    if (t == topic) out[p] = offset;
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace txbox::cluster
