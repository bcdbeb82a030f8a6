// The exactly_once lanes: one transactional producer per lane of shards this relay holds
// (transactional.id <prefix>-lane-<n>). Taking a lane fences its previous owner in Kafka and
// learns from the progress topic what that owner's last transaction published; a round runs
// one transaction per lane, with the lane's progress record inside it. No SQL, no leases: the
// caller passes the lease view and what may be sent. Internal to the relay.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "lane_book.hpp"
#include "progress_log.hpp"
#include "publisher.hpp"
#include "round.hpp"

namespace txbox::relay {

struct LanesOptions {
  PublisherOptions publisher;  ///< every lane's producer (transactional_id set per lane)
  std::string id_prefix;       ///< "txbox-<outbox id>": <prefix>-lane-<n>
  std::string relay_name;      ///< written into the progress records
  std::chrono::milliseconds init_timeout{10'000};    ///< init_transactions, progress reads
  std::chrono::milliseconds commit_timeout{10'000};  ///< commit_transaction, abort
};

/// What one round of transactions did.
struct LaneRound {
  std::vector<Delivery> deliveries;  ///< per row; rows of an aborted transaction: skipped
  std::size_t lease_short = 0;       ///< rows not sent: the leases would not cover their ack
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

  using MayFn = std::function<bool()>;
  /// One round: per lane, a transaction with its rows (as Publisher::send) and its progress
  /// record; waits for the acknowledgements, then commits (in parallel) each lane whose rows
  /// were all acknowledged while `may_commit` says the leases still hold, and aborts the rest.
  LaneRound deliver(std::vector<Row>& rows, const Publisher::HoldFn& hold, const MayFn& may_send,
                    const MayFn& may_commit, const std::stop_token& stop,
                    std::chrono::milliseconds slow_after, const std::function<void()>& on_slow);

  [[nodiscard]] std::size_t lanes() const { return m_book.size(); }
  [[nodiscard]] std::int64_t queue_length() const;
  [[nodiscard]] std::uint64_t late_reports() const;
  /// Waits up to `wait` for what the producers hold, then aborts their open transactions.
  void flush(std::chrono::milliseconds wait);

 private:
  // A new producer for `lane` in `slot` (the old one destroyed first), fencing the earlier.
  void open(int lane, std::unique_ptr<Publisher>& slot) const;

  LanesOptions m_opt;
  ProgressLog& m_progress;
  LaneBook m_book;
  std::map<int, std::unique_ptr<Publisher>> m_producers;  // of the lanes held
};

}  // namespace txbox::relay
