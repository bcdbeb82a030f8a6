// The pipeline's book: which rows may be settled while later rounds are in flight (a shard's
// rows together), which shards the next claim skips, and which shards wait.
#include <gtest/gtest.h>

#include "in_flight.hpp"

namespace {

using txbox::relay::InFlight;
using txbox::relay::LeaseView;
using txbox::relay::Outcome;
using txbox::relay::Row;

Row row(std::int64_t id, int shard) {
  Row r;
  r.id = id;
  r.shard = shard;
  r.topic = "t";
  r.bytes = 100;
  return r;
}

Outcome pending() {
  return {};
}
Outcome acked() {
  return Outcome::acked();
}
Outcome failed() {
  return Outcome::failed(RD_KAFKA_RESP_ERR__TRANSPORT, "down");
}

LeaseView view(std::int64_t epoch = 7) {
  LeaseView v;
  for (int s = 0; s < 4; ++s) v.epochs[s] = epoch;
  return v;
}

std::vector<std::int64_t> ids(const InFlight::Ready& r) {
  std::vector<std::int64_t> out;
  for (const auto& x : r.rows) out.push_back(x.id);
  return out;
}

TEST(RelayInFlight, AShardSettlesOnceAllItsReportsAreInWhileAnotherShardWaits) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 0), row(3, 1), row(4, 1)}, view(),
        {pending(), pending(), pending(), pending()});
  EXPECT_EQ(f.pending(), 4u);
  EXPECT_EQ(f.bytes(), 400u);
  f.report(1, 2, acked());  // shard 1
  f.report(1, 3, acked());
  f.report(1, 1, acked());  // shard 0's second row: its first has no report yet
  auto r = f.take_ready();
  EXPECT_EQ(ids(r), (std::vector<std::int64_t>{3, 4}));
  EXPECT_EQ(r.view.epochs.size(), 1u);
  EXPECT_EQ(r.view.epochs.at(1), 7);
  EXPECT_EQ(f.rows(), 2u);
  EXPECT_EQ(f.bytes(), 200u);
  f.report(1, 0, acked());
  r = f.take_ready();
  EXPECT_EQ(ids(r), (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(f.bytes(), 0u);
}

// Issue 25: a part of a shard taken alone, whose settle then failed (the database went away),
// left its rows in the outbox while the shard's later rows stayed in the book and were
// deleted by a later settle: the earlier rows were then sent again after them (a stale copy
// in the log). A shard is taken whole, once every outcome of it is in.
TEST(RelayInFlight, APartOfAShardIsNeverTakenAlone) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 0)}, view(), {pending(), pending()});
  f.report(1, 0, acked());
  EXPECT_TRUE(f.take_ready().rows.empty()) << "row 1 taken while row 2 is in flight";
  EXPECT_EQ(f.shards(), (std::set<int>{0}));
  f.report(1, 1, acked());
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{1, 2}));
}

TEST(RelayInFlight, RoundsInFlightTogetherSettleInTheOrderSent) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 0)}, view(), {pending(), pending()});
  f.add(2, {row(3, 0)}, view(), {pending()});
  f.report(2, 0, acked());  // the later round first: waits behind the earlier one
  EXPECT_TRUE(f.take_ready().rows.empty());
  f.report(1, 0, acked());
  f.report(1, 1, acked());
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_TRUE(f.empty());
}

// A claim takes a shard's head: a shard is claimed again only once nothing of it is in
// flight, so its next rows (or one that committed late, below them) never overtake one still
// in flight.
TEST(RelayInFlight, AShardIsNotClaimedAgainUntilAllItsRowsAreSettled) {
  InFlight f;
  f.add(1, {row(10, 0), row(11, 0), row(20, 2)}, view(), {pending(), pending(), pending()});
  EXPECT_EQ(f.shards(), (std::set<int>{0, 2}));
  f.report(1, 0, acked());
  f.report(1, 2, acked());
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{20}));
  EXPECT_EQ(f.shards(), (std::set<int>{0})) << "row 11 is still in flight";
  EXPECT_EQ(f.shard_count(), 1u);
  f.report(1, 1, acked());
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{10, 11}));
  EXPECT_TRUE(f.shards().empty());
}

TEST(RelayInFlight, AShardWithAFailedRowIsSettledWholeOnceEverythingOfItIsIn) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 0), row(3, 0), row(4, 1)}, view(),
        {pending(), pending(), pending(), pending()});
  f.report(1, 0, acked());
  f.report(1, 1, failed());
  f.report(1, 3, acked());
  EXPECT_EQ(f.shards(), (std::set<int>{0, 1}));
  // Shard 1 settles; rows 1-3 wait for row 3's report.
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{4}));
  f.report(1, 2, acked());
  auto r = f.take_ready();
  EXPECT_EQ(ids(r), (std::vector<std::int64_t>{1, 2, 3}));  // together: classify stops after 2
  EXPECT_EQ(r.outcomes[1].state(), Outcome::State::failed);
  EXPECT_TRUE(f.shards().empty());  // nothing of it left: claimed from its head again
}

TEST(RelayInFlight, ARowNotSentAtTheHandOverStopsItsShardAtOnce) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 0)}, view(), {pending(), Outcome::skipped("lease")});
  EXPECT_EQ(f.pending(), 1u);
  f.report(1, 0, acked());
  EXPECT_EQ(ids(f.take_ready()), (std::vector<std::int64_t>{1, 2}));
}

TEST(RelayInFlight, AbandonedRowsSettleAsTransientFailures) {
  InFlight f;
  f.add(1, {row(1, 0), row(2, 1)}, view(), {pending(), pending()});
  f.report(1, 1, acked());
  f.abandon();
  EXPECT_EQ(f.pending(), 0u);
  const auto r = f.take_ready();
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.outcomes[0].state(), Outcome::State::given_up);
  EXPECT_TRUE(r.outcomes[0].retryable());  // classify: a transient failure
  EXPECT_NE(r.outcomes[0].err(), RD_KAFKA_RESP_ERR_NO_ERROR);
  f.report(1, 0, acked());  // a report after the give-up books nothing
  EXPECT_TRUE(f.empty());
}

TEST(RelayInFlight, TheFenceTakesEachShardsEpochAtItsLatestClaim) {
  InFlight f;
  f.add(1, {row(1, 0)}, view(7), {pending()});
  f.add(2, {row(2, 0)}, view(8), {pending()});  // the shard was taken afresh meanwhile
  f.report(1, 0, acked());
  f.report(2, 0, acked());
  EXPECT_EQ(f.take_ready().view.epochs.at(0), 8);
}

}  // namespace
