// The relay's ISR diagnosis (relay/src/isr_check, health): how a partition Kafka refuses
// acks=all writes to is described, counted in /metrics, and cleared when deliveries succeed.
#include <gtest/gtest.h>

#include "health.hpp"
#include "isr_check.hpp"

namespace txbox::relay {
namespace {

IsrShortfall short_partition(int p, int leader = 3) {
  return {.topic = "orders",
          .partition = p,
          .leader = leader,
          .isr = {3},
          .min_insync = 2,
          .replicas = 3};
}

TEST(RelayIsr, DescribesPartitionIsrAndMinInsync) {
  EXPECT_EQ(describe({short_partition(0)}),
            "topic 'orders' partition 0: in sync [3] of 3 replicas, min.insync.replicas=2 "
            "(leader 3)");
  EXPECT_EQ(describe({short_partition(1, -1)}),
            "topic 'orders' partition 1: in sync [3] of 3 replicas, min.insync.replicas=2 "
            "(no leader)");
}

TEST(RelayIsr, DescribesAtMostThreeAndCountsTheRest) {
  const std::string d = describe({short_partition(0), short_partition(1), short_partition(2),
                                  short_partition(3), short_partition(4)});
  EXPECT_NE(d.find("partition 2"), std::string::npos) << d;
  EXPECT_EQ(d.find("partition 3"), std::string::npos) << d;
  EXPECT_NE(d.find("and 2 more"), std::string::npos) << d;
}

TEST(RelayIsr, GaugeCountsShortPartitionsUntilDeliveriesSucceed) {
  Health h("host=db.example user=relay");
  h.db_connected();
  h.on_kafka({.reachable = true, .give_back = false, .why = {}});  // the broker probe answered
  ASSERT_TRUE(h.snapshot().ready);
  h.broker(false, "no acknowledgement");
  h.on_isr_shortfalls({short_partition(0), short_partition(1)});
  EXPECT_EQ(h.snapshot().partitions_below_min_isr, 2u);
  EXPECT_NE(h.metrics_text().find("txbox_relay_partitions_below_min_isr 2"), std::string::npos);
  EXPECT_FALSE(h.snapshot().ready);
  h.broker(true);
  EXPECT_TRUE(h.snapshot().ready);
  EXPECT_EQ(h.snapshot().partitions_below_min_isr, 0u);
  EXPECT_NE(h.metrics_text().find("txbox_relay_partitions_below_min_isr 0"), std::string::npos);
}

}  // namespace
}  // namespace txbox::relay
