// The exactly_once lanes: one transactional producer per lane of shards this relay holds
// (transactional.id <prefix>-lane-<n>). Taking a lane fences its previous owner in Kafka and
// learns from the progress topic what that owner's last transaction published; a round runs
// one transaction per lane, with the lane's progress record inside it. No SQL, no leases: the
// caller passes the lease view and what may be sent. Internal to the relay.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lane_book.hpp"
#include "producer.hpp"
#include "progress_log.hpp"
#include "round.hpp"
#include "sync_round.hpp"
#include "txn_producer.hpp"

namespace txbox::relay {

struct LanesOptions {
  ProducerOptions producer;  ///< every lane's producer (transactional_id set per lane)
  std::string id_prefix;     ///< "txbox-<outbox id>": <prefix>-lane-<n>
  std::string relay_name;    ///< written into the progress records
  std::chrono::milliseconds init_timeout{10'000};    ///< init_transactions, progress reads
  std::chrono::milliseconds commit_timeout{10'000};  ///< commit_transaction, abort
};

/// What one round of transactions did.
struct LaneRound {
  std::vector<Row> rows;          ///< the round's rows, given back in their order
  std::vector<Outcome> outcomes;  ///< per row; rows of an aborted transaction: skipped
  std::size_t lease_short = 0;    ///< rows not sent: the leases would not cover their ack
  std::size_t committed = 0;
  std::size_t aborted = 0;
  std::vector<double> commit_seconds;  ///< per commit_transaction
  std::string first_abort;             ///< why the first aborted transaction was aborted
};

class TxnLanes {
 public:
  TxnLanes(LanesOptions options, ProgressLog& progress);
  TxnLanes(const TxnLanes&) = delete;
  TxnLanes& operator=(const TxnLanes&) = delete;

  /// Brings the lanes up to `view`: forgets lanes no longer held; a lane held at a new epoch
  /// (or whose producer failed) gets a new producer, fences the lane's earlier producers and
  /// reads its last committed progress. Returns the rows to delete before anything is sent:
  /// those, and the rows of committed transactions whose DELETE has not been confirmed
  /// (settled()). Throws kafka_call_error when Kafka does not answer (retry later).
  std::vector<PublishedRow> adopt(const LeaseView& view);

  /// The DELETE of everything adopt() and the last round returned went through.
  void settled();

  /// One round: per lane, a transaction with its rows (as SyncRound::send, under `gates`)
  /// and its progress record; waits for the acknowledgements, then commits (in parallel)
  /// each lane whose rows were all acknowledged while the clock is before
  /// gates.commit_until (the leases still hold), and aborts the rest. Returns the rows.
  LaneRound deliver(std::vector<Row> rows, const RoundGates& gates, const Waiting& waiting);

  [[nodiscard]] std::size_t lanes() const { return m_book.size(); }
  [[nodiscard]] std::int64_t queue_length() const;
  [[nodiscard]] std::uint64_t late_reports() const;
  /// Waits up to `wait` for what the producers hold, then aborts their open transactions.
  void flush(std::chrono::milliseconds wait);

 private:
  // A lane's producer, its synchronous round and its transaction calls.
  struct Lane {
    explicit Lane(ProducerOptions options) : producer(std::move(options)) {}
    Producer producer;
    SyncRound round{producer};
    TxnProducer txn{producer};
  };
  // One lane's share of a round: rows [begin, end) of it, in one transaction.
  struct Part {
    int lane = 0;
    std::size_t begin = 0, end = 0;
    std::vector<Row> rows;
    std::vector<PublishedRow> sent;  // handed over: named in the progress record
    std::size_t lease_short = 0;
    bool commit = false;  // every row acknowledged
    bool failed = false;  // the lane broke before its rows were awaited
  };
  struct Ended {
    TxnEnd end;
    double seconds = 0;
  };

  // A new producer for `lane` in `slot` (the old one destroyed first), fencing the earlier.
  void open(int lane, std::unique_ptr<Lane>& slot) const;
  // The round's rows per ready lane (moved out of `rows`), at most k_max_txn_rows each.
  std::vector<Part> split(std::vector<Row>& rows) const;
  // Begins the lane's transaction with its rows and its progress record.
  void begin(Part& part, const RoundGates& gates);
  // Waits for the part's reports; sets part.commit.
  void await_acks(Part& part, const Waiting& waiting, std::vector<Outcome>& outcomes);
  // Commits (when `may_commit`) or aborts each part's transaction, in parallel.
  std::vector<Ended> end_transactions(const std::vector<Part>& parts, bool may_commit);
  // Books how a part's transaction ended into `out`.
  void book_end(Part& part, const Ended& ended, bool may_commit, LaneRound& out);

  LanesOptions m_opt;
  ProgressLog& m_progress;
  LaneBook m_book;
  std::map<int, std::unique_ptr<Lane>> m_producers;  // of the lanes held
};

}  // namespace txbox::relay
