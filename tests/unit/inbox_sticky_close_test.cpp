// librdkafka before 2.3.0 aborts in rd_kafka_destroy when a cooperative-sticky consumer is
// destroyed after its JoinGroup but before its first SyncGroup assignment
// (confluentinc/librdkafka#4312, fixed in 2.3.0 by #4381): "Assertion 'assignor_state'
// failed". librdkafka's mock cluster delays the SyncGroup response, so the consumer is in
// that window for certain when it stops. Needs no server.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <librdkafka/rdkafka_mock.h>  // only after rdkafka.h

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include <unistd.h>

#include "kafka_link.hpp"

namespace {

using namespace std::chrono_literals;
constexpr std::int16_t sync_group_api_key = 14;

// A mock cluster of one broker with topic "t", owned by a throwaway producer handle.
struct mock_cluster {
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> rk{nullptr, &rd_kafka_destroy};
  rd_kafka_mock_cluster_t* mc = nullptr;
  mock_cluster() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // Quiet: this handle only hosts the mock, so it has no bootstrap.servers of its own.
    (void)rd_kafka_conf_set(conf, "log_level", "4", err, sizeof err);
    rk.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err));
    if (!rk) throw std::runtime_error(std::string("cannot create the mock's handle: ") + err);
    mc = rd_kafka_mock_cluster_new(rk.get(), 1);
    if (!mc) throw std::runtime_error("cannot create librdkafka's mock cluster");
    rd_kafka_mock_topic_create(mc, "t", 2, 1);
  }
  ~mock_cluster() { rd_kafka_mock_cluster_destroy(mc); }
  mock_cluster(const mock_cluster&) = delete;
  mock_cluster& operator=(const mock_cluster&) = delete;
};

// Joins with cooperative-sticky while the coordinator holds its SyncGroup answer for
// `sync_delay_ms`, and stops as soon as the JoinGroup answer arrived (before the first
// assignment). `handle_left`: the stop is expected to leave the Kafka handle. Exits the
// (death-test) process: 0 after a clean stop, 2 or 3 when the consumer was not in that
// window; librdkafka < 2.3.0 without the mitigation aborts (signal 6).
void join_then_stop(int sync_delay_ms, bool handle_left) {
  ::dup2(2, 1);  // the consumer's log lines (stdout) to stderr, where EXPECT_EXIT reads
  mock_cluster cluster;
  rd_kafka_mock_broker_push_request_error_rtts(cluster.mc, 1, sync_group_api_key, 1,
                                               RD_KAFKA_RESP_ERR_NO_ERROR, sync_delay_ms);
  txbox::ConsumerConfig cfg;
  cfg.name = "sticky-close";
  cfg.topics = {"t"};
  cfg.kafka = {{"bootstrap.servers", rd_kafka_mock_cluster_bootstraps(cluster.mc)},
               {"partition.assignment.strategy", "cooperative-sticky"}};
  bool assigned = false;
  {
    txbox::inbox::kafka_link link(
        cfg, [&](rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) {
          rd_kafka_error_t* e = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                                    ? rd_kafka_incremental_assign(link.get(), list)
                                    : rd_kafka_incremental_unassign(link.get(), list);
          if (e) rd_kafka_error_destroy(e);
          if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) assigned = true;
        });
    // The assignor is chosen from the JoinGroup answer: "COOPERATIVE" from then on.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::strcmp(rd_kafka_rebalance_protocol(link.get()), "COOPERATIVE") != 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "the consumer never joined the mock group\n");
        std::exit(2);
      }
      (void)link.poll(10ms);
    }
    if (assigned) std::exit(3);  // the delay did not hold the assignment back: no test
  }  // ~kafka_link: close, then rd_kafka_destroy — where librdkafka < 2.3.0 aborted
  if (handle_left) std::_Exit(0);  // left undestroyed on purpose: no leak report (ASan)
  std::exit(0);
}

// The mitigation only runs where the bug is; librdkafka 2.3.0 and later stop plainly.
bool affected() {
  return rd_kafka_version() < 0x02030000;
}

TEST(InboxStickyClose, StopBetweenJoinAndFirstAssignmentExitsCleanly) {
  // The coordinator answers SyncGroup after 1.5 s: the stop waits for it and closes normally.
  EXPECT_EXIT(join_then_stop(1500, false), ::testing::ExitedWithCode(0),
              affected() ? "waiting up to 5 s" : "");
}

TEST(InboxStickyClose, StopWhileTheAssignmentNeverComesExitsCleanly) {
  // Held for 60 s (a stuck group leader): the stop does not wait that long, and still must
  // not abort.
  EXPECT_EXIT(join_then_stop(60000, affected()), ::testing::ExitedWithCode(0),
              affected() ? "left undestroyed" : "");
}

}  // namespace
