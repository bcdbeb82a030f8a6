// partition_driver::rebalance when librdkafka does not know the rebalance protocol:
// rd_kafka_rebalance_protocol() answers NULL (documented: "NULL on error") when the group's
// queue no longer takes requests, as while a consumer is being closed and a rebalance event
// queued before is still served, and for a handle without a consumer group. The driver used
// to strcmp that NULL (a SIGSEGV seen in InboxTest.SlowHandlerAndMovingPartitionsCooperative
// on librdkafka 2.8). A consumer handle without group.id gives the NULL deterministically.
// Needs no server.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "partition_tracker.hpp"

namespace {

using txbox::inbox::partition_driver;
using txbox::inbox::tracker_actions;

struct groupless_consumer {
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> rk{nullptr, &rd_kafka_destroy};
  groupless_consumer() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    (void)rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err));
    if (!rk) throw std::runtime_error(std::string("cannot create a consumer handle: ") + err);
  }
};

std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>
one_partition() {
  std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>
      list(rd_kafka_topic_partition_list_new(1), &rd_kafka_topic_partition_list_destroy);
  rd_kafka_topic_partition_list_add(list.get(), "t", 0);
  return list;
}

TEST(InboxDriverProtocol, UnknownProtocolIsNoCrash) {
  groupless_consumer c;
  ASSERT_EQ(rd_kafka_rebalance_protocol(c.rk.get()), nullptr)
      << "the seam: librdkafka answers NULL for a handle without a group";
  partition_driver driver(c.rk.get(), "driver-protocol");
  const auto list = one_partition();
  tracker_actions a;
  a.assign_at[{"t", 0}] = 5;
  // Each (re)assign fails in librdkafka (no group: a warning); neither may crash.
  driver.rebalance(list.get(), true, a);  // an assignment served while closing
  EXPECT_EQ(list->elems[0].offset, 5);
  driver.rebalance(list.get(), false, a);  // a revocation served while closing
}

}  // namespace
