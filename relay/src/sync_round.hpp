// A synchronous round (a lane's, exactly_once): hands rows over, then waits for the last
// report of the round before anything else happens on its producer. Reports of an earlier
// round (late, or purged) are counted, never booked. On top of a Producer it does not own.
// Internal to the relay.
//
//   SyncRound round(producer);
//   auto handed = round.send(std::move(rows), gates);
//   auto outcomes = round.await(waiting);  // one per row of handed.rows
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <stop_token>
#include <vector>

#include "producer.hpp"

namespace txbox::relay {

/// How a round waits for its acknowledgements: after `stop`, the rest gets the producer's
/// stop_grace then is given up; `on_slow` is called each time nothing came for another
/// `slow_after` (a diagnosis; the round waits on).
struct Waiting {
  std::stop_token stop{};
  std::chrono::milliseconds slow_after{std::chrono::minutes(1)};
  std::function<void()> on_slow = [] {};
};

class SyncRound {
 public:
  explicit SyncRound(Producer& producer) : m_producer(producer) {}

  /// Starts a new round: hands `rows` over (see Producer::hand_over). Returns them with
  /// their outcomes so far (pending: handed over).
  HandOver send(std::vector<Row> rows, const RoundGates& gates);
  /// Serves delivery reports for up to `wait`; true when the round has none outstanding.
  bool poll(std::chrono::milliseconds wait);
  /// Waits for the round's last report. After a fatal producer error the rest is failed at
  /// once; after `waiting.stop`, the rest gets stop_grace then is given up (reports that
  /// never come leave their rows pending). Returns one outcome per row of the round.
  std::vector<Outcome> await(const Waiting& waiting);
  /// Reports that belonged to no row of the current round (an earlier round's), ignored.
  [[nodiscard]] std::uint64_t late_reports() const { return m_late; }

 private:
  void book(std::vector<Report> reports);

  Producer& m_producer;
  std::uint32_t m_round = 0;        // 0: no round outstanding (every report is late)
  std::vector<Outcome> m_outcomes;  // of the current round, by row index
  std::size_t m_outstanding = 0;
  std::uint64_t m_late = 0;
};

}  // namespace txbox::relay
