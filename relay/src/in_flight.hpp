// The pipeline's book (at_least_once): the rows handed to Kafka and not settled yet, per shard
// in the order they were sent. It says which shards have rows in flight (the next claims skip
// them: other shards are claimed meanwhile) and which rows may be settled now: a shard's rows
// all together, once all of their outcomes are in, so a slow partition holds back only the
// shards with rows for it. No SQL, no Kafka: unit-tested alone. Internal to the relay.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "round.hpp"

namespace txbox::relay {

class InFlight {
 public:
  /// A round just handed over: its `rows` (id order per shard; payloads may be freed), the
  /// view it was claimed under, and each row's outcome after the hand-over (pending: sent).
  void add(std::uint32_t round, std::vector<Row> rows, const LeaseView& view,
           std::vector<Outcome> outcomes);
  /// Books the delivery report of the row at `index` of `round` (unknown ones are ignored).
  void report(std::uint32_t round, std::size_t index, Outcome outcome);
  /// Every row still pending is given up (Outcome::given_up: sent again later).
  void abandon();

  /// Rows to settle, with the lease view that fences their settle (each shard's epoch at its
  /// latest claim).
  struct Ready {
    std::vector<Row> rows;  ///< by shard, in the order sent
    std::vector<Outcome> outcomes;
    LeaseView view;
  };
  /// Takes the rows that may be settled now out of the book: every row of each shard whose
  /// outcomes are all in, never a part of a shard. A settle that fails (its transaction did
  /// not commit) then leaves the shard's rows in the outbox together, to be claimed again from
  /// its head in order; a part settled later would let a later row be deleted while an earlier
  /// one of its key is sent again after it (issue 25: a stale copy).
  Ready take_ready();

  /// The shards with rows in the book: not claimed again until those are all settled (a
  /// claim takes a shard's head, so its next rows never overtake one of a row still in flight).
  [[nodiscard]] std::set<int> shards() const;
  /// How many shards have rows in the book (shards().size(), without building the set).
  [[nodiscard]] std::size_t shard_count() const { return m_shards.size(); }
  [[nodiscard]] std::size_t rows() const { return m_rows; }
  [[nodiscard]] std::size_t bytes() const { return m_bytes; }  ///< Row::bytes in the book
  [[nodiscard]] bool empty() const { return m_rows == 0; }
  /// The topics of the rows in the book.
  [[nodiscard]] std::set<std::string> topics() const;
  /// Rows without an outcome yet.
  [[nodiscard]] std::size_t pending() const { return m_pending; }

 private:
  struct Slot {
    Row row;
    Outcome outcome;
    std::int64_t epoch = 0;
  };
  struct Shard {
    std::deque<Slot> slots;  // references stay valid: only push_back
  };
  static std::uint64_t key(std::uint32_t round, std::size_t index) {
    return (static_cast<std::uint64_t>(round) << 32) | static_cast<std::uint32_t>(index);
  }

  std::map<int, Shard> m_shards;
  std::unordered_map<std::uint64_t, Slot*> m_waiting;  // pending slots by round and index
  std::size_t m_rows = 0, m_bytes = 0, m_pending = 0;
};

}  // namespace txbox::relay
