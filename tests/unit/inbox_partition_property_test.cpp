// Property tests of the inbox's partition table (inbox/src/partition_tracker) against a simple
// model of Kafka (a log per partition, librdkafka's fetch position and pause flag), of the
// database (the stored offsets) and of the consumer's round (a batch commits, or a handler
// fails and its partition retries later or dead-letters, or the database fails and every
// partition waits for its stored offset). Random sequences of produce, assign, revoke, batch,
// offsets lost, offsets loaded and retry due, with start_from earliest and latest; then the
// database stays up until everything is consumed. RapidCheck; the seed is printed on failure
// and RC_PARAMS="seed=N" replays it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "partition_tracker.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::inbox::offset_beginning;
using txbox::inbox::offset_end;
using txbox::inbox::offset_invalid;
using txbox::inbox::partition_table;
using txbox::inbox::phase;
using txbox::inbox::steady;
using txbox::inbox::TopicPartition;
using txbox::inbox::tracker_actions;
using offsets = std::map<TopicPartition, std::int64_t>;

constexpr int k_partitions = 2;
constexpr int k_max_attempts = 3;  // policy dead_letter

TopicPartition part(int i) {
  return {"t", i % k_partitions};
}

enum class Kind { produce, assign, revoke, batch, offsets_lost, offsets_loaded, retry_due };
enum class Db { up, unreadable, store_fails };
enum class Outcome { commit, handler_fails, db_fails };

struct Event {
  Kind kind = Kind::produce;
  int partition = 0;
  int count = 1;  // produce: records; batch: records fetched per partition at most
  Db db = Db::up;
  Outcome outcome = Outcome::commit;
  int pick = 0;  // handler_fails: which message of the batch
  int after_ms = 0;
};

// How RapidCheck prints a counterexample.
void showValue(const Event& e, std::ostream& os) {
  static const char* const kinds[] = {"produce",      "assign",         "revoke",   "batch",
                                      "offsets_lost", "offsets_loaded", "retry_due"};
  static const char* const dbs[] = {"db up", "db unreadable", "store fails"};
  static const char* const outcomes[] = {"commit", "handler fails", "db fails"};
  os << kinds[static_cast<int>(e.kind)] << " p" << e.partition % k_partitions;
  switch (e.kind) {
    case Kind::produce:
      os << " +" << e.count;
      break;
    case Kind::assign:
    case Kind::offsets_loaded:
      os << " (" << dbs[static_cast<int>(e.db)] << ")";
      break;
    case Kind::batch:
      os << " (" << outcomes[static_cast<int>(e.outcome)] << ", pick " << e.pick << ", up to "
         << e.count << ")";
      break;
    case Kind::retry_due:
      os << " +" << e.after_ms << " ms";
      break;
    default:
      break;
  }
}

// librdkafka's view of an assigned partition.
struct Fetcher {
  std::int64_t position = 0;
  bool paused = false;
};

struct World {
  explicit World(bool from_earliest) : earliest(from_earliest), table(from_earliest) {}

  bool earliest;
  partition_table table;
  steady::time_point now{};
  offsets log_end;                          // records 0 .. end-1 per partition
  offsets stored;                           // inbox_offsets (and Kafka's mirror of it)
  std::map<TopicPartition, Fetcher> fetch;  // the assigned partitions
  offsets start;                            // where each partition's messages begin
  std::set<std::pair<TopicPartition, std::int64_t>> handled, dead;

  std::int64_t resolve(const TopicPartition& tp, std::int64_t offset) {
    if (offset == offset_end) return log_end[tp];
    if (offset == offset_beginning) return 0;
    if (offset == offset_invalid) {  // Kafka's committed offset, else auto.offset.reset
      const auto it = stored.find(tp);
      if (it != stored.end()) return it->second;
      return earliest ? 0 : log_end[tp];
    }
    return offset;
  }

  void apply(const tracker_actions& a) {
    for (const auto& tp : a.pause) {
      if (fetch.contains(tp)) fetch[tp].paused = true;
    }
    for (const auto& [tp, offset] : a.seek) {
      if (fetch.contains(tp)) fetch[tp].position = resolve(tp, offset);
    }
    for (const auto& tp : a.resume) {
      if (fetch.contains(tp)) fetch[tp].paused = false;
    }
  }

  void database_failed() { apply(table.offsets_lost()); }

  // The consumer stores what the table asks to; a failed store is a database failure.
  void store(const tracker_actions& a, bool ok) {
    if (a.store.empty()) return;
    if (!ok) {
      database_failed();
      return;
    }
    for (const auto& [tp, offset] : a.store) stored[tp] = std::max(stored[tp], offset);
  }

  void assign(const TopicPartition& tp, Db db) {
    if (fetch.contains(tp)) return;
    if (!stored.contains(tp)) start[tp] = earliest ? 0 : log_end[tp];
    offsets ends;
    if (!earliest) ends[tp] = log_end[tp];  // read from Kafka at assignment
    std::optional<offsets> readable;
    if (db == Db::unreadable) {
      database_failed();
    } else {
      readable = stored;
    }
    const auto a = table.assigned({tp}, readable, ends);
    fetch[tp] = Fetcher{resolve(tp, a.assign_at.at(tp)), false};
    apply(a);
    store(a, db != Db::store_fails);
  }

  void revoke(const TopicPartition& tp) {
    if (!fetch.contains(tp)) return;
    apply(table.revoked({tp}));
    fetch.erase(tp);
  }

  void offsets_loaded(Db db) {
    if (table.unknown().empty()) return;
    if (db == Db::unreadable) {
      database_failed();
      return;
    }
    const auto a = table.offsets_loaded(stored, now);
    apply(a);
    store(a, db != Db::store_fails);
  }

  // One poll round's batch, run as batch_runner and Consumer::committed do.
  void batch(Outcome outcome, int per_partition, int pick) {
    std::vector<std::pair<TopicPartition, std::int64_t>> msgs;
    for (auto& [tp, f] : fetch) {
      for (int n = 0; !f.paused && f.position < log_end[tp] && n < per_partition; ++n) {
        const auto offset = f.position++;
        if (table.accepts(tp, offset)) msgs.emplace_back(tp, offset);
      }
    }
    if (msgs.empty()) return;
    if (outcome == Outcome::db_fails) {
      database_failed();
      return;
    }
    std::optional<std::pair<TopicPartition, std::int64_t>> bad;
    int attempts = 0;
    bool is_dead = false;
    if (outcome == Outcome::handler_fails) {
      bad = msgs[static_cast<std::size_t>(pick) % msgs.size()];
      const auto p = table.prior(bad->first);
      attempts = p && p->offset == bad->second ? p->attempts + 1 : 1;
      is_dead = attempts >= k_max_attempts;
    }
    offsets next;
    for (const auto& m : msgs) {
      if (bad && !is_dead && m.first == bad->first && m.second >= bad->second) continue;
      if (bad && is_dead && m == *bad) {
        dead.insert(m);
      } else {
        handled.insert(m);
      }
      next[m.first] = m.second + 1;
    }
    if (bad) table.failed(bad->first, bad->second, attempts);
    for (const auto& [tp, offset] : next) stored[tp] = std::max(stored[tp], offset);
    apply(table.committed(next));
    if (bad && !is_dead) {
      apply(table.retry_later(bad->first, bad->second, now + attempts * 10ms, false, "boom"));
    }
  }

  void step(const Event& e) {
    const auto tp = part(e.partition);
    switch (e.kind) {
      case Kind::produce:
        log_end[tp] += e.count;
        break;
      case Kind::assign:
        assign(tp, e.db);
        break;
      case Kind::revoke:
        revoke(tp);
        break;
      case Kind::batch:
        batch(e.outcome, e.count, e.pick);
        break;
      case Kind::offsets_lost:
        database_failed();
        break;
      case Kind::offsets_loaded:
        offsets_loaded(e.db);
        break;
      case Kind::retry_due:
        now += std::chrono::milliseconds(e.after_ms);
        apply(table.due(now));
        break;
    }
  }

  // A partition's next offset never goes back before what is committed.
  void check_never_backwards() const {
    for (const auto& [tp, s] : table.partitions()) {
      const auto c = stored.find(tp);
      if (s.phase == phase::offset_unknown || c == stored.end()) continue;
      RC_ASSERT(s.next_offset >= c->second);
      RC_ASSERT(!table.accepts(tp, c->second - 1));
    }
  }

  // The database stays up: every partition is assigned (to this consumer or, the same to the
  // model, another one), retries come due, batches commit, until nothing is left to fetch.
  void drain() {
    for (int round = 0; round < 20; ++round) {
      for (int i = 0; i < k_partitions; ++i) assign(part(i), Db::up);
      offsets_loaded(Db::up);
      now += 1s;
      apply(table.due(now));
      batch(Outcome::commit, 1 << 20, 0);
      check_never_backwards();
    }
  }

  // Every offset from a partition's start is handled or dead-lettered: none skipped.
  void check_none_skipped() const {
    for (const auto& [tp, end] : log_end) {
      const auto s = start.find(tp);
      RC_ASSERT(s != start.end());
      for (auto o = s->second; o < end; ++o) {
        if (!handled.contains({tp, o}) && !dead.contains({tp, o})) {
          RC_FAIL("partition " + std::to_string(tp.partition) + " offset " + std::to_string(o) +
                  " skipped (start " + std::to_string(s->second) + ", end " + std::to_string(end) +
                  ", fetch position " + std::to_string(fetch.at(tp).position) + ")");
        }
      }
    }
  }
};

rc::Gen<Event> gen_event() {
  return rc::gen::build<Event>(
      rc::gen::set(&Event::kind,
                   rc::gen::element(Kind::produce, Kind::assign, Kind::revoke, Kind::batch,
                                    Kind::offsets_lost, Kind::offsets_loaded, Kind::retry_due)),
      rc::gen::set(&Event::partition, rc::gen::inRange(0, k_partitions)),
      rc::gen::set(&Event::count, rc::gen::inRange(1, 6)),
      rc::gen::set(&Event::db, rc::gen::element(Db::up, Db::unreadable, Db::store_fails)),
      rc::gen::set(&Event::outcome,
                   rc::gen::element(Outcome::commit, Outcome::handler_fails, Outcome::db_fails)),
      rc::gen::set(&Event::pick, rc::gen::inRange(0, 100)),
      rc::gen::set(&Event::after_ms, rc::gen::inRange(0, 40)));
}

void run(bool from_earliest, const std::vector<Event>& events) {
  World w(from_earliest);
  for (int i = 0; i < k_partitions; ++i) w.log_end[part(i)] = 3;  // records before anyone came
  for (const auto& e : events) {
    w.step(e);
    w.check_never_backwards();
  }
  w.drain();
  w.check_none_skipped();
}

}  // namespace

RC_GTEST_PROP(InboxPartitionProperty, EarliestNeverSkipsAnOffsetNorGoesBackwards, ()) {
  run(true, *rc::gen::container<std::vector<Event>>(gen_event()));
}

RC_GTEST_PROP(InboxPartitionProperty, LatestNeverSkipsAnOffsetNorGoesBackwards, ()) {
  run(false, *rc::gen::container<std::vector<Event>>(gen_event()));
}
