// Property tests of the at_least_once settle path (relay/src/in_flight, relay/src/settle_plan)
// against a model of the outbox: random commits, claims of the shards' heads (outcomes at the
// hand-over as the publisher gives them: sent, held by strict durability, refused for good or
// for now, skipped behind its key's head or for a short lease), delivery reports in any
// order, acknowledged, failed for now or for good, a stop giving up on what is pending, and
// settles at any moment. RapidCheck; the seed is printed on failure and RC_PARAMS="seed=N"
// replays it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "in_flight.hpp"
#include "settle_plan.hpp"

namespace {

using txbox::relay::InFlight;
using txbox::relay::LeaseView;
using RowOutcome = txbox::relay::Outcome;  // what became of a row
using txbox::relay::Row;

constexpr int k_shards = 3;
constexpr int k_keys = 6;  // key k lives in shard k % k_shards

enum class Kind { commit, claim, report, abandon, settle };

// At the hand-over: what becomes of a row; in a report: how Kafka answers.
enum class Outcome { sent, held, refused_now, refused_for_good, lease_short };

struct Step {
  Kind kind = Kind::commit;
  int arg = 0;
  std::vector<Outcome> outcomes;  // claim: one per row, in order
};

// How RapidCheck prints a step of a counterexample.
void showValue(const Step& s, std::ostream& os) {
  static const char* const kinds[] = {"commit", "claim", "report", "abandon", "settle"};
  static const char* const outcomes[] = {"sent", "held", "refused_now", "refused_for_good",
                                         "lease_short"};
  os << kinds[static_cast<int>(s.kind)] << "(" << s.arg;
  for (const auto o : s.outcomes) os << ", " << outcomes[static_cast<int>(o)];
  os << ")";
}

RowOutcome acked() {
  return RowOutcome::acked();
}
RowOutcome failed_now() {
  return RowOutcome::failed(RD_KAFKA_RESP_ERR__TRANSPORT, "down");
}
RowOutcome failed_for_good() {
  return RowOutcome::failed(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "too large");
}

struct World {
  std::map<std::int64_t, int> outbox;  // id -> key
  std::int64_t next_id = 1;
  InFlight book;
  std::uint32_t round = 0;
  std::vector<std::pair<std::uint32_t, std::size_t>> waiting;  // rows sent, no report yet
  LeaseView view;
  int settled = 0;

  World() {
    for (int s = 0; s < k_shards; ++s) view.epochs[s] = 1;
  }

  // A claim of each shard's head (shards with rows in flight are not claimed), handed over as
  // the publisher does: after a held row or one refused for now, its key's later rows are
  // skipped (not the other keys of its shard); from a short lease on, every row is.
  void claim(const std::vector<Outcome>& plan) {
    const auto busy = book.shards();
    std::vector<Row> rows;
    for (const auto& [id, key] : outbox) {
      if (busy.contains(key % k_shards) || rows.size() == plan.size()) continue;
      Row r;
      r.id = id;
      r.key = std::to_string(key);
      r.topic = "t";
      r.shard = key % k_shards;
      r.bytes = 1;
      rows.push_back(std::move(r));
    }
    if (rows.empty()) return;
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.id < b.id;  // by shard, in id order
    });
    const std::uint32_t r = ++round;
    std::vector<RowOutcome> out(rows.size());
    std::set<std::string> stopped;  // keys
    bool short_lease = false;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      short_lease |= plan[i] == Outcome::lease_short;
      if (short_lease) {
        out[i] = RowOutcome::skipped("lease about to expire");
      } else if (stopped.contains(*rows[i].key)) {
        out[i] = RowOutcome::skipped("waits");
      } else if (plan[i] == Outcome::held) {
        out[i] = RowOutcome::held("weak topic");
        stopped.insert(*rows[i].key);
      } else if (plan[i] == Outcome::refused_now) {
        out[i] = failed_now();
        stopped.insert(*rows[i].key);
      } else if (plan[i] == Outcome::refused_for_good) {
        out[i] = failed_for_good();
      } else {
        waiting.emplace_back(r, i);
      }
    }
    book.add(r, std::move(rows), view, std::move(out));
  }

  void report(int pick, Outcome how) {
    if (waiting.empty()) return;
    const auto i = static_cast<std::size_t>(pick) % waiting.size();
    const auto [r, index] = waiting[i];
    waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
    book.report(r, index,
                how == Outcome::refused_now        ? failed_now()
                : how == Outcome::refused_for_good ? failed_for_good()
                                                   : acked());
  }

  // Settles what the book gives, as the store does (acknowledged: deleted; refused for good:
  // dead-lettered; the rest stays). Property: per key, a row is never settled before an
  // earlier row of its key (a row that failed for now or was held holds its key's later rows;
  // the other keys of its shard go on: a weak topic must not stall 1/64 of every other key).
  void settle() {
    auto ready = book.take_ready();
    const auto plan = txbox::relay::classify_round(ready.rows, ready.outcomes, 0);
    std::vector<std::int64_t> gone = plan.delete_ids;
    for (const auto& d : plan.dead) gone.push_back(d.id);
    for (const auto id : gone) RC_ASSERT(outbox.erase(id) == 1u);
    for (const auto id : gone) {
      const auto row = std::find_if(ready.rows.begin(), ready.rows.end(),
                                    [&](const Row& r) { return r.id == id; });
      RC_ASSERT(row != ready.rows.end());
      for (const auto& [left, key] : outbox) {
        if (left > id) break;
        RC_ASSERT(std::to_string(key) != *row->key);  // an earlier row of its key stays
      }
    }
    settled += static_cast<int>(gone.size());
  }

  void apply(const Step& s) {
    switch (s.kind) {
      case Kind::commit:
        outbox[next_id++] = s.arg % k_keys;
        return;
      case Kind::claim:
        claim(s.outcomes);
        return;
      case Kind::report:
        report(s.arg, s.outcomes.empty() ? Outcome::sent : s.outcomes.front());
        return;
      case Kind::abandon:  // a stop: the reports still missing are given up
        book.abandon();
        waiting.clear();
        return;
      case Kind::settle:
        settle();
        return;
    }
  }
};

rc::Gen<Outcome> gen_outcome() {
  return rc::gen::weightedElement<Outcome>({{12, Outcome::sent},
                                            {1, Outcome::held},
                                            {2, Outcome::refused_now},
                                            {1, Outcome::refused_for_good},
                                            {1, Outcome::lease_short}});
}

rc::Gen<Step> gen_step() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::kind, rc::gen::weightedElement<Kind>({{5, Kind::commit},
                                                                {3, Kind::claim},
                                                                {6, Kind::report},
                                                                {1, Kind::abandon},
                                                                {3, Kind::settle}})),
      rc::gen::set(&Step::arg, rc::gen::inRange(0, 1000)),
      rc::gen::set(&Step::outcomes,
                   rc::gen::mapcat(rc::gen::inRange<std::size_t>(1, 7), [](std::size_t n) {
                     return rc::gen::container<std::vector<Outcome>>(n, gen_outcome());
                   })));
}

}  // namespace

// Whatever the hand-over outcomes, the order of the reports and the moments of the settles:
// per key a row is never settled before an earlier row of its key (a row that failed for now
// or was held holds its key's later rows, not its shard's). Run to the end with every report
// acknowledged, the outbox drains.
RC_GTEST_PROP(RelaySettleProperty, NoRowIsSettledBeforeAnEarlierRowOfItsKey, ()) {
  const auto steps = *rc::gen::container<std::vector<Step>>(gen_step());
  World w;
  for (const auto& s : steps) w.apply(s);
  for (int i = 0; i < 100 && !w.outbox.empty(); ++i) {
    w.apply({Kind::claim, 0, std::vector<Outcome>(8, Outcome::sent)});
    while (!w.waiting.empty()) w.apply({Kind::report, 0, {Outcome::sent}});
    w.apply({Kind::settle, 0, {}});
  }
  RC_ASSERT(w.outbox.empty());
}
