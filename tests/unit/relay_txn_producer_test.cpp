// A lane's transaction calls against librdkafka's mock cluster (which coordinates
// transactions): a round and its progress record commit together, or are aborted.
#include <gtest/gtest.h>

#include "relay_mock_kafka.hpp"
#include "sync_round.hpp"
#include "txn_producer.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::Outcome;
using txbox::relay::Producer;
using txbox::relay::ProducerOptions;
using txbox::relay::SyncRound;
using txbox::relay::TxnProducer;
using State = Outcome::State;

class RelayTxnProducer : public txbox::relay::testing::MockKafka {
 protected:
  [[nodiscard]] ProducerOptions txn_options(const std::string& id) const {
    ProducerOptions o = options();
    o.transactional_id = id;
    o.transaction_timeout = 10s;
    return o;
  }
};

TEST_F(RelayTxnProducer, ARoundAndItsProgressRecordCommitTogether) {
  Producer p(txn_options("txbox-test-lane-0"));
  SyncRound round(p);
  TxnProducer txn(p);
  txn.init_transactions(10s);
  txn.begin_transaction();
  round.send(rows("ok", 3), open_gates());
  txn.produce_record("ok", 0, "lane-0", "progress");
  const auto d = round.await({});
  EXPECT_EQ(count(d, State::acked), 3u);
  const auto end = txn.commit(10s);
  EXPECT_TRUE(end.committed) << end.error;
  EXPECT_FALSE(end.fatal);
  EXPECT_EQ(round.late_reports(), 0u) << "the progress record is no row of the round";
}

TEST_F(RelayTxnProducer, AnOpenTransactionIsAbortedAndTheNextOneCommits) {
  Producer p(txn_options("txbox-test-lane-1"));
  SyncRound round(p);
  TxnProducer txn(p);
  txn.init_transactions(10s);
  txn.begin_transaction();
  round.send(rows("ok", 2), open_gates());
  round.await({});
  EXPECT_TRUE(txn.abort(10s));
  txn.begin_transaction();
  round.send(rows("ok", 2, 10), open_gates());
  EXPECT_EQ(count(round.await({}), State::acked), 2u);
  EXPECT_TRUE(txn.commit(10s).committed);
}

TEST_F(RelayTxnProducer, BeginningTwiceIsRefusedWithTheCallNamed) {
  Producer p(txn_options("txbox-test-lane-3"));
  TxnProducer txn(p);
  txn.init_transactions(10s);
  txn.begin_transaction();
  try {
    txn.begin_transaction();
    FAIL() << "a second begin_transaction was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("begin_transaction"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(txn.abort(10s));
}

}  // namespace
