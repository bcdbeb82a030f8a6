// The seed's acks table, measured on the cluster: the followers paused out of the ISR, the
// leader killed, an out-of-date follower elected (the topic allows unclean election). A plain
// producer with acks=1 loses what the dead leader acknowledged (the negative control: it shows
// the test can see a loss); txbox-relay in the same scenario loses nothing, because Kafka
// refuses its acks=all writes while the ISR is below min.insync.replicas. The counts go to
// docs/reliability.md.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "relay_support.hpp"
#include "scenario.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::cluster {
namespace {

// The followers of partition 0 are paused until the leader is alone in the ISR; returns them.
std::vector<int> isolate_leader(const std::string& topic, int& leader) {
  leader = describe(topic).at(0).leader;
  std::vector<int> followers;
  for (int n = 1; n <= 3; ++n) {
    if (n != leader) followers.push_back(n);
  }
  for (int f : followers) node("node-pause", f);
  // The controller fences a broker that stops heartbeating (broker.session.timeout.ms, 9 s)
  // and takes it out of every ISR.
  const auto alone = [](const PartitionState& p) { return p.isr.size() == 1; };
  if (!wait_partitions(topic, alone, 60s)) throw std::runtime_error("the ISR did not shrink");
  return followers;
}

// Kills the leader, resumes the followers and waits until one of them is elected (uncleanly:
// it is not in the ISR), then starts the old leader again, which truncates to the new one.
void elect_unclean(const std::string& topic, int leader, const std::vector<int>& followers) {
  node("node-kill", leader);
  for (int f : followers) node("node-resume", f);
  const auto moved = [leader](const PartitionState& p) {
    return p.leader >= 1 && p.leader != leader;
  };
  if (!wait_partitions(topic, moved, 120s)) {
    throw std::runtime_error("no follower was elected after the leader died");
  }
  node("node-start", leader);
  if (!wait_partitions(topic, fully_in_sync, 90s)) {
    throw std::runtime_error("the old leader did not rejoin the ISR");
  }
}

class ClusterAcks : public ::testing::Test {
 protected:
  // Every test starts and ends on a whole cluster, whatever the one before did.
  void SetUp() override { restore_all(); }
  void TearDown() override { restore_all(); }
};

struct RawOutcome {
  std::size_t acknowledged = 0, lost = 0;
};

// A plain producer (`acks`, idempotence as given) writes 2,000 records while the leader is
// alone in the ISR, then the leader dies and a follower is elected uncleanly: how many of the
// acknowledged records are gone.
RawOutcome raw_producer_loss(const std::string& topic, const std::string& acks,
                             const std::string& idempotence) {
  int leader = -1;
  const auto followers = isolate_leader(topic, leader);
  static std::set<std::string> acked;
  acked.clear();
  char err[512];
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", bootstrap()},
                                                               {"acks", acks},
                                                               {"enable.idempotence", idempotence},
                                                               {"linger.ms", "5"}}) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(err);
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (!m->err) acked.emplace(static_cast<const char*>(m->payload), m->len);
  });
  detail::kafka_ptr p(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  if (!p) throw std::runtime_error(err);
  for (int i = 0; i < 2000; ++i) {
    const std::string v = fmt::format("raw-{}", i);
    while (rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p.get(), 10);
    }
    if (i % 100 == 0) rd_kafka_poll(p.get(), 0);
  }
  rd_kafka_flush(p.get(), 30000);
  RawOutcome out;
  out.acknowledged = acked.size();
  elect_unclean(topic, leader, followers);
  const auto records = test::read_records(bootstrap(), topic, out.acknowledged, 20s);
  std::size_t kept = 0;
  for (const auto& r : records) kept += acked.count(r.value);
  out.lost = out.acknowledged - kept;
  return out;
}

// The negative controls: a plain producer where the broker lets the leader alone
// acknowledge. acks=1 ignores min.insync.replicas; acks=all is only as strong as it.
struct Weak {
  const char* name;
  const char* acks;
  const char* idempotence;
  const char* min_insync;
};

void PrintTo(const Weak& w, std::ostream* os) {
  *os << w.name;
}

class ClusterAcksControl : public ClusterAcks, public ::testing::WithParamInterface<Weak> {};

TEST_P(ClusterAcksControl, LosesAcknowledgedWritesWhenAnUncleanLeaderIsElected) {
  const Weak& w = GetParam();
  const std::string topic = test::unique_name(w.name);
  create_topic(topic, 1, 3,
               {{"unclean.leader.election.enable", "true"}, {"min.insync.replicas", w.min_insync}});
  const auto r = raw_producer_loss(topic, w.acks, w.idempotence);
  std::cout << fmt::format(
                   "[cluster] acks={}, min.insync.replicas={}, unclean election: {} "
                   "acknowledged, {} lost\n",
                   w.acks, w.min_insync, r.acknowledged, r.lost)
            << std::flush;
  EXPECT_EQ(r.acknowledged, 2000u) << "the leader alone acknowledges these writes";
  EXPECT_GT(r.lost, 0u) << "the negative control saw no loss: the scenario did not happen";
}

INSTANTIATE_TEST_SUITE_P(Cluster, ClusterAcksControl,
                         ::testing::Values(Weak{"acks1", "1", "false", "2"},
                                           Weak{"acksall_minisr1", "all", "true", "1"}),
                         [](const auto& p) { return std::string(p.param.name); });

TEST_F(ClusterAcks, RelayLosesNothingWhereAcksOneLoses) {
  Scenario s("cl_acksall", {.messages = 2000,
                            .keys = 20,
                            .write_seconds = 12,
                            .partitions = 1,
                            .topic_configs = {{"unclean.leader.election.enable", "true"}}});
  s.start_writing();
  std::this_thread::sleep_for(3s);
  int leader = -1;
  s.mark("followers paused");
  const auto followers = isolate_leader(s.topic(), leader);
  const long published_alone = s.published();
  std::this_thread::sleep_for(12s);  // the relays try while the leader is alone
  const long acked_alone = s.published() - published_alone;
  s.mark("leader killed, a follower elected uncleanly");
  elect_unclean(s.topic(), leader, followers);
  s.wait_writers(120s);
  std::string why;
  ASSERT_TRUE(s.drain(180s, why)) << why;
  const auto v = s.verdict();
  EXPECT_EQ(v.lost, 0);
  EXPECT_EQ(v.duplicate_effects, 0);
  EXPECT_EQ(v.order_violations, 0);
  EXPECT_EQ(v.outbox_dead, 0);
  for (const auto& d : v.details) ADD_FAILURE() << d;
  EXPECT_TRUE(s.all_running());
  EXPECT_LE(acked_alone, 200) << "acks=all writes went through with the leader alone in the ISR";
  std::cout << fmt::format(
                   "[cluster] acks=all through txbox-relay, unclean election: {} committed, "
                   "{} acknowledged while the leader was alone, {} lost\n",
                   v.committed, acked_alone, v.lost)
            << std::flush;
}

}  // namespace
}  // namespace txbox::cluster
