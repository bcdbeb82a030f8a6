// relay.delivery = exactly_once on the real broker (and, built with TXBOX_EOS_ON_CLUSTER, on
// the 3-broker cluster): what a plain read_committed consumer (not txbox) finds in the log
// after the worst-timed crash and after a stall past the lease, and the same crash in
// at_least_once mode as the negative control.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "http_support.hpp"
#include "relay_fixture.hpp"
#ifdef TXBOX_EOS_ON_CLUSTER
#include "cluster.hpp"
#endif

namespace txbox::test {
namespace {

using namespace std::chrono_literals;

// Every committed record of `topic` as an isolation.level=read_committed consumer sees it:
// each partition read from the start until librdkafka reports its end (the last stable
// offset). Call it when no transaction is open on the topic (the relays stopped or idle).
std::vector<Record> read_committed_log(const std::string& bootstrap, const std::string& topic) {
  const auto ends = partition_ends(topic, bootstrap);
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] :
       std::map<std::string, std::string>{{"bootstrap.servers", bootstrap},
                                          {"group.id", unique_name("audit")},
                                          {"enable.auto.commit", "false"},
                                          {"enable.partition.eof", "true"},
                                          {"isolation.level", "read_committed"}}) {
    rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err);
  }
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();
  detail::partition_list_ptr parts(
      rd_kafka_topic_partition_list_new(static_cast<int>(ends.size())));
  for (const auto& [p, end] : ends) {
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk.get(), parts.get());
  std::vector<Record> out;
  std::size_t at_end = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (at_end < ends.size() && std::chrono::steady_clock::now() < until) {
    detail::message_ptr m(rd_kafka_consumer_poll(rk.get(), 200));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ++at_end;
      continue;
    }
    if (m->err) continue;
    out.push_back(record_of(*m, topic));
  }
  EXPECT_EQ(at_end, ends.size()) << "the audit did not reach the end of every partition";
  rd_kafka_consumer_close(rk.get());
  std::stable_sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

#ifndef TXBOX_EOS_ON_CLUSTER
// Creates `topic` (replication factor 1) with topic configs `configs`, and waits until its
// partitions have leaders.
void create_topic_with(const std::string& topic, int partitions,
                       const std::map<std::string, std::string>& configs) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", endpoints().kafka.c_str(), err, sizeof err);
  detail::kafka_ptr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took the conf on success
  detail::new_topic_ptr nt(rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err));
  if (!nt) throw std::runtime_error(err);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str());
  detail::queue_ptr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(rk.get(), topics, 1, nullptr, q.get());
  detail::event_ptr ev(rd_kafka_queue_poll(q.get(), 30000));
  if (!ev || rd_kafka_event_error(ev.get())) {
    throw std::runtime_error("CreateTopics " + topic + " failed");
  }
  create_topic(topic, partitions);  // exists already: waits for the leaders
}
#endif

// True while process `pid` is stopped (SIGSTOP): state T in /proc/<pid>/stat.
bool stopped(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string id, comm, state;
  f >> id >> comm >> state;
  return state == "T";
}

class ExactlyOnce : public RelayTest {
 protected:
  void SetUp() override {
#ifdef TXBOX_EOS_ON_CLUSTER
    cluster::restore_all();
    schema_ = unique_name("eo");
    topic_ = unique_name("eos_topic");
    create_schema(schema_);
    cluster::create_topic(topic_, 6);
    bootstrap_ = cluster::bootstrap();
#else
    RelayTest::SetUp();
    bootstrap_ = endpoints().kafka;
#endif
  }
#ifdef TXBOX_EOS_ON_CLUSTER
  void TearDown() override {
    cluster::restore_all();
  }
#endif

  // A relay process; `fault`: TXBOX_FAULT_POINT for it (empty: none).
  std::unique_ptr<Process> relay(const std::string& name, bool exactly_once,
                                 const std::string& fault = "", int http_port = 0) {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "TXBOX_FAULT_POINT=" + fault,
                                     program("txbox-relay"),
                                     "--config",
                                     config_,
                                     "--name",
                                     name};
    if (exactly_once) argv.emplace_back("--exactly-once");
    if (http_port > 0) {
      argv.emplace_back("--http-listen");
      argv.push_back(fmt::format("127.0.0.1:{}", http_port));
    }
    return std::make_unique<Process>(argv, "/tmp/" + unique_name(name) + ".log");
  }

  // Rows in the outbox whose messages the log already holds: what a crash between Kafka's
  // commit (or ack) and the DELETE leaves behind.
  long overlap(int total) {
    return static_cast<long>(read_committed_log(bootstrap_, topic_).size()) + pending() - total;
  }

  // The crash at the worst instant: relay A publishes small rounds and dies (SIGKILL) right
  // after Kafka committed (acknowledged) its third, before its DELETE; relay B takes over and
  // drains. Returns {rows both in the log and the outbox after the crash, duplicates in the
  // log at the end, B's recovered-rows counter}.
  struct Outcome {
    long overlap = 0;
    int duplicates = 0;
    double recovered = 0;
  };
  Outcome crash_after_publish(bool exactly_once, int total) {
    config_ = config("batch_size = 5");
    enqueue(total, 20, 50);
    auto a = relay("relay-a", exactly_once, "after_publish:3");
    EXPECT_EQ(a->wait(90s), 128 + SIGKILL)
        << "relay A did not die at the fault point (is it built with TXBOX_FAULT_POINTS?)\n"
        << a->output();
    Outcome o;
    o.overlap = overlap(total);
    const int port = free_port();
    auto b = relay("relay-b", exactly_once, "", port);
    EXPECT_TRUE(wait_drained(120s)) << pending() << " rows left\n" << b->output();
    o.recovered = metric(port, "txbox_relay_recovered_rows_total");
    b->signal(SIGTERM);
    EXPECT_EQ(b->wait(30s), 0) << b->output();
    o.duplicates = check_stream(read_committed_log(bootstrap_, topic_), total);
    return o;
  }

  std::string config_;
};

TEST_F(ExactlyOnce, CrashAfterKafkaCommitBeforeDeleteLeavesEachMessageOnceInTheLog) {
  const auto o = crash_after_publish(/*exactly_once=*/true, 3000);
  // The fault left committed rows in the outbox (else the test proves nothing) ...
  EXPECT_GT(o.overlap, 0) << "the crash left no committed row undeleted";
  // ... which relay B deleted without sending them again.
  EXPECT_EQ(o.duplicates, 0);
  EXPECT_EQ(o.recovered, static_cast<double>(o.overlap));
  std::cout << fmt::format(
      "[eos] crash after commit: {} committed rows left in the outbox, {} "
      "recovered by the next relay, {} duplicates in the log\n",
      o.overlap, o.recovered, o.duplicates);
}

// The negative control: the same crash in at_least_once mode puts those rows in the log twice.
TEST_F(ExactlyOnce, NegativeControlAtLeastOnceDuplicatesWhatTheCrashLeft) {
  const auto o = crash_after_publish(/*exactly_once=*/false, 3000);
  EXPECT_GT(o.overlap, 0);
  EXPECT_EQ(o.duplicates, o.overlap);
  std::cout << fmt::format("[eos] at_least_once control: {} duplicates in the log\n", o.duplicates);
}

// A relay frozen (SIGSTOP) with its transactions' rows acknowledged but not committed, past
// its lease; relay B takes the lanes (fencing A) and drains; then A resumes and tries to
// commit: Kafka refuses, and nothing of A's last round becomes visible.
TEST_F(ExactlyOnce, StaleRelayResumedAfterTakeoverMakesNothingVisible) {
  const int total = 2000;
  config_ = config("batch_size = 5");
  enqueue(total, 20, 50);
  auto a = relay("relay-a", true, "before_commit:4:stop");
  ASSERT_TRUE(wait_until([&] { return stopped(a->pid()); }, 60s))
      << "relay A never stopped at the fault point\n"
      << a->output();
  auto b = relay("relay-b", true);
  EXPECT_TRUE(wait_drained(120s)) << pending() << " rows left\n" << b->output();
  a->signal(SIGCONT);
  std::this_thread::sleep_for(5s);  // A tries to commit, is fenced, loses its lanes
  b->signal(SIGTERM);
  a->signal(SIGTERM);
  EXPECT_EQ(b->wait(30s), 0) << b->output();
  a->wait(30s);
  EXPECT_EQ(check_stream(read_committed_log(bootstrap_, topic_), total), 0) << "relay A:\n"
                                                                            << a->output();
  EXPECT_NE(a->output().find("fenced"), std::string::npos)
      << "relay A's commit was not refused by Kafka\n"
      << a->output();
}

#ifndef TXBOX_EOS_ON_CLUSTER
// Issue 25, defect 5: two outboxes (schemas) name one progress topic in relay.progress_topic.
// Outbox A's relay dies after Kafka committed a round, before its DELETE; outbox B's relay
// then commits on the same lanes (the same partitions of the progress topic); A's next relay
// must find A's last record, not B's, and delete those rows without sending them again.
TEST_F(ExactlyOnce, OutboxesSharingAProgressTopicEachFindTheirOwnProgress) {
  const int total = 3000;
  const std::string progress = unique_name("shared_progress");
  const std::string shared = "progress_topic = \"" + progress + "\"\nbatch_size = 5";
  config_ = config(shared);
  enqueue(total, 20, 50);
  auto a = relay("relay-a", true, "after_publish:3");
  ASSERT_EQ(a->wait(90s), 128 + SIGKILL)
      << "relay A did not die at the fault point (is it built with TXBOX_FAULT_POINTS?)\n"
      << a->output();
  const long left = overlap(total);
  ASSERT_GT(left, 0) << "the crash left no committed row undeleted";
  // Outbox B, same keys (so the same shards and lanes), its own schema and target topic.
  const std::string schema_a = schema_, topic_a = topic_, config_a = config_;
  schema_ = unique_name("eo_b");
  topic_ = unique_name("eos_topic_b");
  create_schema(schema_);
  create_topic(topic_, 6);
  config_ = config(shared);
  enqueue(total, 20, 50);
  auto b = relay("relay-b", true);
  EXPECT_TRUE(wait_drained(120s)) << pending() << " rows of B left\n" << b->output();
  b->signal(SIGTERM);
  EXPECT_EQ(b->wait(30s), 0) << b->output();
  EXPECT_EQ(check_stream(read_committed_log(bootstrap_, topic_), total), 0)
      << "outbox B's log holds duplicates";
  // Outbox A again, after B's commits.
  schema_ = schema_a;
  topic_ = topic_a;
  config_ = config_a;
  const int port = free_port();
  auto a2 = relay("relay-a2", true, "", port);
  EXPECT_TRUE(wait_drained(120s)) << pending() << " rows of A left\n" << a2->output();
  const double recovered = metric(port, "txbox_relay_recovered_rows_total");
  a2->signal(SIGTERM);
  EXPECT_EQ(a2->wait(30s), 0) << a2->output();
  const int dups = check_stream(read_committed_log(bootstrap_, topic_), total);
  EXPECT_EQ(dups, 0) << "outbox A's relay re-sent what its crashed predecessor had committed";
  EXPECT_EQ(recovered, static_cast<double>(left));
  std::cout << fmt::format(
      "[eos] shared progress topic: {} committed rows of A left by the crash, {} recovered, {} "
      "duplicates in A's log\n",
      left, recovered, dups);
}

// Issue 25, minor: a round whose acknowledgements do not come is diagnosed with that round's
// topics (exactly_once read them from rows already moved into the lanes' transactions: the
// check never ran). The broker throttles the relay's producers (a produce quota on its
// client.id), so no round is acknowledged within the lease TTL; the round's topic has
// min.insync.replicas=2 on the one broker, which the ISR check reports.
TEST_F(ExactlyOnce, ASlowRoundIsDiagnosedWithItsTopicsInSyncReplicas) {
  const std::string weak = unique_name("eos_min_isr");
  create_topic_with(weak, 2, {{"min.insync.replicas", "2"}});
  const std::string client = unique_name("eos_slow");
  const auto jars = endpoints().all.find("TXBOX_TEST_KAFKA_JARS");
  ASSERT_NE(jars, endpoints().all.end()) << "TXBOX_TEST_KAFKA_JARS: the broker's jars";
  std::string out;
  ASSERT_EQ(run_command("java -cp '" + jars->second + "/*' kafka.admin.ConfigCommand " +
                            "--bootstrap-server " + endpoints().kafka +
                            " --alter --add-config producer_byte_rate=10 --entity-type clients "
                            "--entity-name " +
                            client,
                        &out),
            0)
      << out;
  topic_ = weak;
  config_ = config("", "", "\"client.id\" = \"" + client + "\"\n");
  enqueue(200, 1, 50);  // one key: one lane, one transaction, whose rows are all moved out
  const int port = free_port();
  auto r = relay("relay-a", true, "", port);
  const bool seen =
      wait_until([&] { return metric(port, "txbox_relay_partitions_below_min_isr") >= 1; }, 60s);
  r->signal(SIGTERM);
  r->wait(30s);
  EXPECT_TRUE(seen) << "no partition of '" << weak << "' counted below min.insync.replicas\n"
                    << r->output();
  EXPECT_NE(r->output().find("topic '" + weak + "' partition"), std::string::npos) << r->output();
}

// Bad input at start, each with its fix: a progress topic that cannot hold the lanes (exit 3),
// a schema without migration V5 (exit 4). Nothing is published, nothing is lost.
TEST_F(ExactlyOnce, AProgressTopicWithTooFewPartitionsIsRefusedAtStart) {
  const std::string progress = unique_name("progress");
  create_topic(progress, 2);
  config_ = config("progress_topic = \"" + progress + "\"");
  enqueue(10, 2, 10);
  auto r = relay("relay-a", true);
  EXPECT_EQ(r->wait(60s), 3) << r->output();
  EXPECT_NE(r->output().find("has 2 partition(s); exactly_once needs 8 (one per lane)"),
            std::string::npos)
      << r->output();
  EXPECT_NE(r->output().find("kafka-topics.sh --alter --topic " + progress + " --partitions 8"),
            std::string::npos)
      << r->output();
  EXPECT_EQ(pending(), 10);
}

TEST_F(ExactlyOnce, ASchemaWithoutV5IsRefusedNamingTheMigration) {
  pqxx::connection c(endpoints().pg);
  pqxx::nontransaction(c).exec("DROP TABLE " + schema_ + ".outbox_identity; DELETE FROM " +
                               schema_ + ".schema_version WHERE version = 5");
  config_ = config();
  enqueue(10, 2, 10);
  auto r = relay("relay-a", true);
  EXPECT_EQ(r->wait(60s), 4) << r->output();
  EXPECT_NE(r->output().find("migrations/V5__outbox_identity.sql"), std::string::npos)
      << r->output();
  EXPECT_EQ(pending(), 10);
}
#endif

#ifdef TXBOX_EOS_ON_CLUSTER
// The leader of the topic's partition 0 killed (SIGKILL) while transactions run; relays
// and a second relay go on; the log holds each message once, in order per key.
TEST_F(ExactlyOnce, LeaderKillDuringTransactionsLeavesEachMessageOnceInTheLog) {
  const int total = 6000;
  config_ = config("batch_size = 5");
  enqueue(total, 20, 50);
  auto a = relay("relay-a", true);
  auto b = relay("relay-b", true);
  ASSERT_TRUE(wait_until([&] { return pending() < total - 500; }, 60s)) << a->output();
  const int leader = cluster::describe(topic_).at(0).leader;
  ASSERT_GE(leader, 1);
  cluster::node("node-kill", leader);
  ASSERT_TRUE(wait_until([&] { return pending() < total / 2; }, 60s))
      << "nothing published after the leader kill\n"
      << a->output();
  cluster::node("node-start", leader);
  EXPECT_TRUE(wait_drained(180s)) << pending() << " rows left\n" << a->output();
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  EXPECT_EQ(a->wait(30s), 0) << a->output();
  EXPECT_EQ(b->wait(30s), 0) << b->output();
  EXPECT_EQ(check_stream(read_committed_log(bootstrap_, topic_), total), 0);
}
#endif

}  // namespace
}  // namespace txbox::test
