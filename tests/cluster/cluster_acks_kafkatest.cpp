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
  void TearDown() override { restore_all(); }
};

TEST_F(ClusterAcks, AcksOneLosesAcknowledgedWritesWhenAnUncleanLeaderIsElected) {
  const std::string topic = test::unique_name("cl_acks1");
  create_topic(topic, 1, 3, {{"unclean.leader.election.enable", "true"}});
  int leader = -1;
  const auto followers = isolate_leader(topic, leader);

  // A plain producer as many services configure one: acks=1, no idempotence.
  static std::set<std::string> acked;
  acked.clear();
  char err[512];
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", bootstrap()},
                                                               {"acks", "1"},
                                                               {"enable.idempotence", "false"},
                                                               {"linger.ms", "5"}}) {
    ASSERT_EQ(rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err),
              RD_KAFKA_CONF_OK);
  }
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (!m->err) acked.emplace(static_cast<const char*>(m->payload), m->len);
  });
  detail::kafka_ptr p(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
  ASSERT_TRUE(p) << err;
  constexpr int n = 2000;
  for (int i = 0; i < n; ++i) {
    const std::string v = fmt::format("acks1-{}", i);
    ASSERT_EQ(rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    if (i % 100 == 0) rd_kafka_poll(p.get(), 0);
  }
  ASSERT_EQ(rd_kafka_flush(p.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  const std::size_t acknowledged = acked.size();
  ASSERT_EQ(acknowledged, static_cast<std::size_t>(n)) << "the leader acknowledged them all";

  elect_unclean(topic, leader, followers);
  const auto records = test::read_records(bootstrap(), topic, acknowledged, 20s);
  std::size_t kept = 0;
  for (const auto& r : records) kept += acked.count(r.value);
  const std::size_t lost = acknowledged - kept;
  std::cout << fmt::format("[cluster] acks=1, unclean election: {} acknowledged, {} lost\n",
                           acknowledged, lost)
            << std::flush;
  EXPECT_GT(lost, 0u) << "the negative control saw no loss: the scenario did not happen";
}

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
