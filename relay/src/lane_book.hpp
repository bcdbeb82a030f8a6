// The exactly_once lanes' bookkeeping, without Kafka or SQL: which lanes this relay holds (at
// the epochs of their shards), which need a new producer, and per lane the rows of its last
// committed transaction whose DELETE is not confirmed. It keeps the rule that makes a lane's
// progress record enough: a lane runs no new transaction while rows of its last one may still
// be in the outbox. TxnLanes drives it; the property tests drive it against a model. Internal
// to the relay.
//   LaneBook book;
//   for (int lane : book.follow(view)) { /* fence */ book.opened(lane, last_committed(lane)); }
//   delete(book.unsettled()); book.settled();
//   if (book.ready(lane)) { /* transaction */ book.committed(lane, rows); }
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "progress_log.hpp"
#include "round.hpp"

namespace txbox::relay {

class LaneBook {
 public:
  /// Follows `view`: forgets the lanes no longer wholly held at the epochs they were taken
  /// at (with their unsettled rows: the next owner reads them from the progress topic), and
  /// returns the lanes to open: newly held, or broken. Those are not ready until opened().
  std::vector<int> follow(const LeaseView& view);
  /// `lane` has its new producer (its earlier ones fenced); `last`: the rows its last
  /// committed transaction published, from the progress topic.
  void opened(int lane, std::vector<PublishedRow> last);
  /// `lane`'s producer failed (fatal, fenced, commit in doubt): follow() returns it again.
  void broke(int lane);
  /// `lane`'s transaction committed, naming `rows` in its progress record.
  void committed(int lane, std::vector<PublishedRow> rows);

  /// What must be deleted before the next transaction of any lane.
  [[nodiscard]] std::vector<PublishedRow> unsettled() const;
  /// The DELETE of unsettled() went through (rows of shards lost meanwhile are the next
  /// owner's to delete).
  void settled();

  /// True when `lane` may run a transaction: held, opened, not broken, nothing unsettled.
  [[nodiscard]] bool ready(int lane) const;
  /// True when `lane` is held, opened and not broken.
  [[nodiscard]] bool is_open(int lane) const;
  /// True when `lane` is held (opened or not).
  [[nodiscard]] bool is_held(int lane) const { return m_lanes.contains(lane); }
  [[nodiscard]] std::size_t size() const { return m_lanes.size(); }

 private:
  struct Lane {
    std::vector<std::int64_t> epochs;  // of its shards, as adopted
    bool broken = true;                // not opened yet, or its producer failed
    std::vector<PublishedRow> unsettled;
  };
  std::map<int, Lane> m_lanes;
};

/// The epochs of `lane`'s shards in `view` (empty when the lane is not wholly held).
std::vector<std::int64_t> lane_epochs(const LeaseView& view, int lane);

}  // namespace txbox::relay
