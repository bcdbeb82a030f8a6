// The relay's outbox store and lease table on the real database: the round's byte budget,
// per-shard order, the epoch fence, the bounded start-up read.
#include <gtest/gtest.h>

#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "harness.hpp"
#include "lease_table.hpp"
#include "outbox_store.hpp"
#include "relay_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using namespace std::chrono_literals;
using txbox::test::endpoints;
namespace relay = txbox::relay;

class RelayStore : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("rs");
    txbox::test::create_schema(schema_);
    db_ = std::make_unique<pqxx::connection>(endpoints().pg);
  }

  // One key per shard, in shard order.
  std::vector<std::string> shard_keys() {
    std::vector<std::string> keys;
    for (const auto& row : pqxx::nontransaction(*db_).exec(
             "SELECT DISTINCT ON (hashtext(k) & 63) k FROM (SELECT 'key' || i AS k FROM "
             "generate_series(1, 5000) i) g ORDER BY hashtext(k) & 63, k")) {
      keys.push_back(row[0].as<std::string>());
    }
    return keys;
  }

  void enqueue(const std::string& key, std::size_t bytes, int count = 1) {
    const txbox::Outbox ob({.schema = schema_});
    pqxx::work tx(*db_);
    for (int i = 0; i < count; ++i) {
      ob.enqueue(
          tx,
          {.topic = "t" + std::to_string(i % 3), .key = key, .payload = std::string(bytes, 'p')});
    }
    tx.commit();
  }

  // All 64 shards for `owner` (two ticks: the first only joins).
  relay::LeaseView take_all(relay::LeaseTable& leases) {
    leases.tick(*db_);
    return leases.tick(*db_).view;
  }

  txbox::detail::schema_name schema() const { return txbox::detail::schema_name(schema_); }

  std::string schema_;
  std::unique_ptr<pqxx::connection> db_;
};

TEST_F(RelayStore, ARoundStaysWithinTheByteBudgetOverAllShardsButTakesAtLeastOneRow) {
  for (const auto& k : shard_keys()) enqueue(k, 900'000);
  relay::LeaseTable leases(schema(), "me", 10s);
  const auto view = take_all(leases);
  ASSERT_EQ(view.epochs.size(), 64u);
  relay::OutboxStore store(schema(), "me", 500, 1u << 20);
  std::set<int> shards;
  for (int round = 0; round < 3; ++round) {
    const auto rows = store.claim(*db_, view);
    ASSERT_EQ(rows.size(), 1u) << "900 KB rows with a 1 MiB budget: one per round";
    shards.insert(rows[0].shard);
  }
  EXPECT_EQ(shards.size(), 3u) << "the shards take turns at the head of the budget";
}

TEST_F(RelayStore, EachShardsRowsAreAPrefixOfItsHeadInIdOrder) {
  const auto keys = shard_keys();
  for (int s = 0; s < 8; ++s) enqueue(keys[static_cast<std::size_t>(s)], 10'000, 20);
  relay::LeaseTable leases(schema(), "me", 10s);
  const auto view = take_all(leases);
  // 160 rows of ~11 KiB; a 300 KiB budget takes ~27 of them.
  relay::OutboxStore store(schema(), "me", 500, 300u << 10);
  const auto rows = store.claim(*db_, view);
  EXPECT_GT(rows.size(), 10u);
  EXPECT_LT(rows.size(), 30u);
  std::map<int, std::vector<std::int64_t>> by_shard;
  for (const auto& r : rows) by_shard[r.shard].push_back(r.id);
  for (const auto& [shard, ids] : by_shard) {
    const auto head =
        pq::exec(pqxx::nontransaction(*db_),
                 "SELECT id FROM " + schema_ + ".outbox WHERE shard = $1 ORDER BY id LIMIT $2",
                 shard, static_cast<int>(ids.size()));
    ASSERT_EQ(head.size(), ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(head[static_cast<int>(i)][0].as<std::int64_t>(), ids[i]) << "shard " << shard;
    }
  }
}

// Pipelining: the rows in flight take part of relay.max_batch_bytes; the next claim gets
// what they leave (and still at least one row).
TEST_F(RelayStore, AClaimsBudgetBoundsTheRoundBelowMaxBatchBytes) {
  const auto keys = shard_keys();
  for (int s = 0; s < 8; ++s) enqueue(keys[static_cast<std::size_t>(s)], 10'000, 20);
  relay::LeaseTable leases(schema(), "me", 10s);
  const auto view = take_all(leases);
  relay::OutboxStore store(schema(), "me", 500, 1u << 20);
  EXPECT_EQ(store.claim(*db_, view).size(), 94u) << "1 MiB of ~11 KiB rows";
  EXPECT_EQ(store.claim(*db_, view, 100u << 10).size(), 9u) << "100 KiB of ~11 KiB rows";
  EXPECT_EQ(store.claim(*db_, view, 1).size(), 1u) << "every round makes progress";
}

TEST_F(RelayStore, ARowWaitingForItsRetryHoldsBackTheRestOfItsShard) {
  const auto keys = shard_keys();
  enqueue(keys[0], 10, 5);
  enqueue(keys[1], 10, 5);
  pq::exec(
      pqxx::nontransaction(*db_),
      "UPDATE " + schema_ +
          ".outbox SET next_attempt_at = now() + interval '1 hour' WHERE id = (SELECT id FROM " +
          schema_ + ".outbox WHERE key = $1 ORDER BY id OFFSET 2 LIMIT 1)",
      keys[0]);
  relay::LeaseTable leases(schema(), "me", 10s);
  relay::OutboxStore store(schema(), "me", 500, 32u << 20);
  const auto rows = store.claim(*db_, take_all(leases));
  std::map<int, int> per_shard;
  for (const auto& r : rows) ++per_shard[r.shard];
  EXPECT_EQ(per_shard[0], 2);  // the two before the waiting row
  EXPECT_EQ(per_shard[1], 5);
}

TEST_F(RelayStore, ASettleUnderAStaleEpochChangesNothing) {
  enqueue("k", 10, 3);
  relay::LeaseTable leases(schema(), "me", 10s);
  auto view = take_all(leases);
  relay::OutboxStore store(schema(), "me", 500, 32u << 20);
  const auto rows = store.claim(*db_, view);
  ASSERT_EQ(rows.size(), 3u);
  // Another relay took the shard over meanwhile (a new epoch).
  pq::exec(pqxx::nontransaction(*db_),
           "UPDATE " + schema_ +
               ".outbox_leases SET owner = 'other', epoch = epoch "
               "+ 1, expires_at = now() + interval '1 minute' "
               "WHERE shard = $1",
           rows[0].shard);
  relay::SettlePlan plan;
  for (const auto& r : rows) plan.delete_ids.push_back(r.id);
  const auto counts = store.settle(*db_, view, plan, [](int) { return 100ms; });
  EXPECT_EQ(counts.deleted, 0u);
  EXPECT_EQ(txbox::test::outbox_rows(schema_), 3);
  // The relay's next tick sees the loss.
  EXPECT_EQ(leases.tick(*db_).view.epochs.count(rows[0].shard), 0u);
}

TEST_F(RelayStore, StartUpTopicsComeFromTheShardHeadsOnly) {
  const auto keys = shard_keys();
  enqueue(keys[0], 10, 3);  // topics t0, t1, t2
  relay::OutboxStore store(schema(), "me", 500, 32u << 20);
  EXPECT_EQ(store.head_topics(*db_, 100), (std::set<std::string>{"t0", "t1", "t2"}));
  EXPECT_EQ(store.head_topics(*db_, 1), (std::set<std::string>{"t0"}));
}

}  // namespace

namespace {

// The lanes (groups of k_lane_shards) wholly in `view`.
std::set<int> whole_lanes(const relay::LeaseView& view) {
  std::map<int, int> n;
  for (const auto& [sh, ep] : view.epochs) ++n[relay::lane_of(sh)];
  std::set<int> out;
  for (const auto& [lane, count] : n) {
    EXPECT_EQ(count, relay::k_lane_shards) << "lane " << lane << " held in part";
    if (count == relay::k_lane_shards) out.insert(lane);
  }
  return out;
}

}  // namespace

// exactly_once leases: shards are taken in whole lanes, shared fairly by lanes, and a lane
// another relay holds one shard of is never taken (it would have two producers).
TEST_F(RelayStore, LaneLeasesAreTakenWholeAndSharedByLanes) {
  relay::LeaseTable a(schema(), "a", 10s, relay::k_lane_shards);
  relay::LeaseTable b(schema(), "b", 10s, relay::k_lane_shards);
  relay::LeaseTable c(schema(), "c", 10s, relay::k_lane_shards);
  a.tick(*db_);
  b.tick(*db_);
  c.tick(*db_);  // all three joined: fair share ceil(8 / 3) = 3 lanes
  const auto la = whole_lanes(a.tick(*db_).view);
  const auto lb = whole_lanes(b.tick(*db_).view);
  const auto lc = whole_lanes(c.tick(*db_).view);
  EXPECT_EQ(la.size(), 3u);
  EXPECT_EQ(lb.size(), 3u);
  EXPECT_EQ(lc.size(), 2u);
  std::set<int> all = la;
  all.insert(lb.begin(), lb.end());
  all.insert(lc.begin(), lc.end());
  EXPECT_EQ(all.size(), 8u) << "a lane went to two relays";

  // A shard of one of c's lanes taken by an at_least_once relay ('x'): c gives the rest of
  // that lane back at its next tick, and no lane relay takes it while 'x' holds the shard.
  const int lane = *lc.begin();
  pq::exec(
      pqxx::nontransaction(*db_),
      "UPDATE " + schema_ +
          ".outbox_leases SET owner = 'x', epoch = epoch + 1, expires_at = now() + interval '1 "
          "minute' WHERE shard = $1",
      lane * relay::k_lane_shards);
  const auto after = whole_lanes(c.tick(*db_).view);
  EXPECT_FALSE(after.contains(lane));
  EXPECT_FALSE(whole_lanes(a.tick(*db_).view).contains(lane));
  EXPECT_FALSE(whole_lanes(b.tick(*db_).view).contains(lane));
  const auto held_by_c = pq::exec1(
      pqxx::nontransaction(*db_),
      "SELECT count(*) FROM " + schema_ + ".outbox_leases WHERE owner = 'c' AND shard / $1 = $2",
      relay::k_lane_shards, lane)[0];
  EXPECT_EQ(held_by_c.as<int>(), 0) << "the rest of the lane was not given back";
}

// What a lane's new owner deletes: rows whose id AND message id a committed transaction
// named, of shards it holds at its epoch; an id re-issued for another message stays.
TEST_F(RelayStore, DeletePublishedMatchesIdAndMessageIdUnderTheFence) {
  enqueue("k", 10, 3);
  relay::LeaseTable leases(schema(), "me", 10s);
  const auto view = take_all(leases);
  relay::OutboxStore store(schema(), "me", 500, 32u << 20);
  const auto rows = store.claim(*db_, view);
  ASSERT_EQ(rows.size(), 3u);
  // Row 0 as published; row 1's id with another message id (an id re-issued after a
  // failover); row 2 not named.
  const auto n =
      store.delete_published(*db_, view, {rows[0].id, rows[1].id},
                             {rows[0].message_id, "00000000-0000-7000-8000-000000000000"});
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(txbox::test::outbox_rows(schema_), 2);
  // Under a stale view (the shard moved on): nothing.
  pq::exec(pqxx::nontransaction(*db_),
           "UPDATE " + schema_ + ".outbox_leases SET epoch = epoch + 1 WHERE shard = $1",
           rows[1].shard);
  EXPECT_EQ(store.delete_published(*db_, view, {rows[1].id}, {rows[1].message_id}), 0u);
  EXPECT_EQ(txbox::test::outbox_rows(schema_), 2);
  EXPECT_FALSE(store.identity(*db_).empty());
}

// Issue 30: a relay that cannot reach Kafka takes no shard and does not heartbeat; lost past
// the bound, it gives its idle shards back when another relay is live, and keeps those with
// rows in flight. When no other relay is live (Kafka gone for all), it keeps them.
TEST_F(RelayStore, ARelayWithoutKafkaTakesNothingAndGivesItsIdleShardsBack) {
  const auto relays_named = [&](const std::string& name) {
    return pq::exec1(pqxx::nontransaction(*db_),
                     "SELECT count(*) FROM " + schema_ + ".outbox_relays WHERE name = $1", name)[0]
        .as<int>();
  };
  const relay::LeaseIntent lost{.publish = false, .give_back = false, .busy = {}};
  const relay::LeaseIntent gone{.publish = false, .give_back = true, .busy = {5}};
  relay::LeaseTable b(schema(), "b", 1s);
  // Never reached Kafka: nothing taken, no heartbeat.
  EXPECT_TRUE(b.tick(*db_, lost).view.empty());
  EXPECT_TRUE(b.tick(*db_, gone).view.empty());
  EXPECT_EQ(relays_named("b"), 0);

  EXPECT_EQ(take_all(b).epochs.size(), 64u);
  // Lost, not past the bound: renewed, kept.
  const auto renewed = b.tick(*db_, lost);
  EXPECT_EQ(renewed.view.epochs.size(), 64u);
  EXPECT_EQ(renewed.changes, 0u);
  // Past the bound, but no other relay is live: kept.
  EXPECT_EQ(b.tick(*db_, gone).view.epochs.size(), 64u);

  relay::LeaseTable a(schema(), "a", 1s);
  a.tick(*db_);  // joins: a live relay
  const auto after = b.tick(*db_, gone);
  EXPECT_EQ(after.view.epochs.size(), 1u);
  EXPECT_TRUE(after.view.epochs.contains(5)) << "a shard with rows in flight was given back";
  EXPECT_EQ(after.changes, 63u);
  // b's heartbeat is stale after the ttl: a counts itself alone and takes the 63; b renews
  // the busy shard meanwhile.
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(b.tick(*db_, gone).view.epochs.size(), 1u) << "the busy shard was not renewed";
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(a.tick(*db_).view.epochs.size(), 63u);
  EXPECT_EQ(relays_named("b"), 1) << "the heartbeat row stays (stale), as after a crash";
}

// Issue 25, defect 6: a relay holding more than its fair share when another joins gives back
// the shards without rows in flight first; those with rows in flight stay its own (renewed,
// not claimed: draining) until they have settled, so that the new owner never re-sends rows
// still waiting for their acknowledgements (their old copies would land after newer ones).
TEST_F(RelayStore, AShardWithRowsInFlightIsGivenBackOnlyOnceTheyHaveSettled) {
  relay::LeaseTable b(schema(), "b", 3s);
  ASSERT_EQ(take_all(b).epochs.size(), 64u);
  relay::LeaseTable a(schema(), "a", 3s);
  a.tick(*db_);  // joins: b's fair share is 32 now
  std::set<int> in_flight;
  for (int sh = 10; sh < 44; ++sh) in_flight.insert(sh);  // 34 shards
  const auto shared = b.tick(*db_, {.publish = true, .give_back = false, .busy = in_flight});
  for (const int sh : in_flight) {
    EXPECT_TRUE(shared.view.epochs.contains(sh)) << "shard " << sh << " given back in flight";
  }
  EXPECT_EQ(shared.view.epochs.size(), 34u) << "the 30 idle shards went back";
  EXPECT_EQ(shared.view.draining, (std::set<int>{42, 43})) << "the busy ones beyond the share";
  std::set<int> still_in_flight;
  for (int sh = 10; sh < 21; ++sh) still_in_flight.insert(sh);
  const auto claimable = relay::claimable(shared.view, still_in_flight);
  EXPECT_EQ(claimable.epochs.size(), 21u) << "neither in flight nor draining";
  EXPECT_FALSE(claimable.epochs.contains(42));
  EXPECT_EQ(a.tick(*db_).view.epochs.size(), 30u) << "a takes what was given back";
  // Settled: given back at the next tick, and taken by a.
  const auto settled = b.tick(*db_, {.publish = true, .give_back = false, .busy = {}});
  EXPECT_EQ(settled.view.epochs.size(), 32u);
  EXPECT_TRUE(settled.view.draining.empty());
  EXPECT_EQ(a.tick(*db_).view.epochs.size(), 32u);
}
