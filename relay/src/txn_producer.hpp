// The transaction calls of a lane's producer (exactly_once): fence the earlier producers of
// its transactional.id, begin, add the lane's progress record, commit or abort. On top of a
// transactional Producer it does not own. Internal to the relay.
//
//   TxnProducer txn(producer);  // ProducerOptions::transactional_id set
//   txn.init_transactions(10s);
//   txn.begin_transaction();
//   ... SyncRound::send, produce_record ...
//   const TxnEnd end = txn.commit(10s);
#pragma once

#include <chrono>
#include <string>

#include "producer.hpp"

namespace txbox::relay {

/// How a transaction ended.
struct TxnEnd {
  bool committed = false;
  /// The producer can go on no more (fenced by a newer producer of its id, or the outcome of
  /// the commit is in doubt): replace it and learn from Kafka what was committed.
  bool fatal = false;
  std::string error{};  ///< why it did not commit
};

class TxnProducer {
 public:
  explicit TxnProducer(Producer& producer) : m_producer(producer) {}

  /// Fences every earlier producer of the id (Kafka aborts its open transaction, or
  /// completes its commit) and waits for that. Throws kafka_call_error.
  void init_transactions(std::chrono::milliseconds timeout);
  /// Starts a transaction (before the round's hand-over). Throws kafka_call_error.
  void begin_transaction();
  /// Adds one record outside the round's rows to the open transaction (a lane's progress);
  /// commit() reports its fate. Throws kafka_call_error when librdkafka refuses it.
  void produce_record(const std::string& topic, int partition, const std::string& key,
                      const std::string& value);
  /// Commits the open transaction, retrying what librdkafka says may be retried; aborts it
  /// when Kafka requires that.
  TxnEnd commit(std::chrono::milliseconds timeout);
  /// Aborts the open transaction (what is queued is purged). False when the producer cannot
  /// abort (fatal): replace it.
  bool abort(std::chrono::milliseconds timeout);

 private:
  Producer& m_producer;
};

}  // namespace txbox::relay
