// Property tests of exactly_once lane adoption (relay/src/lane_book, progress_log's
// ProgressScan) against a simple model of Kafka (a progress topic shared with another outbox,
// fencing by transactional id) and of the outbox (rows deleted under the leases): random
// interleavings of claims, commits, DELETEs that fail, crashes, takeovers and the other
// outbox's commits. RapidCheck; the seed is printed on failure and RC_PARAMS="seed=N" replays
// it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lane_book.hpp"
#include "progress_log.hpp"

namespace {

using txbox::relay::encode_progress;
using txbox::relay::k_lane_shards;
using txbox::relay::lane_key;
using txbox::relay::LaneBook;
using txbox::relay::LeaseView;
using txbox::relay::legacy_progress_key;
using txbox::relay::ProgressScan;
using txbox::relay::PublishedRow;

const std::string k_own = "txbox-aaaa";    // this outbox's id prefix
const std::string k_other = "txbox-bbbb";  // the outbox sharing the progress topic

// A record of one lane's partition of the progress topic.
struct Record {
  std::string key;
  std::vector<PublishedRow> rows;
};

using RowSet = std::set<std::pair<std::int64_t, std::string>>;

RowSet as_set(const std::vector<PublishedRow>& rows) {
  RowSet s;
  for (const auto& r : rows) s.emplace(r.id, r.message_id);
  return s;
}

// Rows of outbox `prefix` named by a record: ids 1..40 in both outboxes (ids alone collide),
// message ids tell them apart.
std::vector<PublishedRow> rows_of(const std::string& prefix, const std::vector<int>& ids) {
  std::vector<PublishedRow> out;
  for (const int id : ids) out.push_back({id, prefix + "/" + std::to_string(id)});
  return out;
}

// --- Reading progress from a shared topic -------------------------------------------------

enum class Writer { own, other, legacy };

struct Written {
  Writer writer;
  std::vector<int> ids;
};

void showValue(const Written& w, std::ostream& os) {
  os << (w.writer == Writer::own     ? "own"
         : w.writer == Writer::other ? "other"
                                     : "legacy")
     << " record of " << w.ids.size() << " row(s)";
}

rc::Gen<Written> gen_written() {
  return rc::gen::build<Written>(
      rc::gen::set(&Written::writer, rc::gen::element(Writer::own, Writer::other, Writer::legacy)),
      rc::gen::set(&Written::ids, rc::gen::container<std::vector<int>>(rc::gen::inRange(1, 40))));
}

// Whatever the records of other outboxes (and of the previous version) around this outbox's,
// a scan finds exactly the rows of this outbox's last record: in its own default topic a
// record keyed the old way is its own; in a named topic such records after its own last one
// are added (they may be its own), never put in place of it. A scan of any suffix holding the
// last own record finds the same (the reader starts near the end and looks further back only
// when it found nothing).
RC_GTEST_PROP(RelayLaneProperty, ReadingASharedProgressTopicReturnsOnlyThisOutboxsRecords, ()) {
  const int lane = *rc::gen::inRange(0, txbox::relay::k_lanes);
  const auto written = *rc::gen::container<std::vector<Written>>(gen_written());
  const bool default_topic = *rc::gen::arbitrary<bool>();
  const auto policy = default_topic ? ProgressScan::legacy::own : ProgressScan::legacy::maybe_own;
  std::vector<Record> partition;
  for (const auto& w : written) {
    switch (w.writer) {
      case Writer::own:
        partition.push_back({lane_key(k_own, lane), rows_of(k_own, w.ids)});
        break;
      case Writer::other:
        partition.push_back({lane_key(k_other, lane), rows_of(k_other, w.ids)});
        break;
      case Writer::legacy:  // the previous version: this outbox's in its default topic
        partition.push_back(
            {legacy_progress_key(lane),
             rows_of(default_topic ? k_own : *rc::gen::element(k_own, k_other), w.ids)});
        break;
    }
  }
  // The model: the last record known to be ours, and maybe-ours records after it.
  std::optional<std::size_t> last_own;
  for (std::size_t i = 0; i < partition.size(); ++i) {
    const bool legacy = partition[i].key == legacy_progress_key(lane);
    if (partition[i].key == lane_key(k_own, lane) || (legacy && default_topic)) last_own = i;
  }
  RowSet expected;
  if (last_own) expected = as_set(partition[*last_own].rows);
  for (std::size_t i = last_own ? *last_own + 1 : 0; i < partition.size(); ++i) {
    if (partition[i].key == legacy_progress_key(lane)) {
      for (const auto& r : partition[i].rows) expected.emplace(r.id, r.message_id);
    }
  }
  const std::size_t from = *rc::gen::inRange<std::size_t>(0, partition.size() + 1);
  ProgressScan whole(lane_key(k_own, lane), legacy_progress_key(lane), policy);
  ProgressScan suffix(lane_key(k_own, lane), legacy_progress_key(lane), policy);
  for (std::size_t i = 0; i < partition.size(); ++i) {
    const auto value = encode_progress(lane, "relay", partition[i].rows);
    whole.add(partition[i].key, value);
    if (i >= from) suffix.add(partition[i].key, value);
  }
  RC_ASSERT(whole.found() == last_own.has_value());
  RC_ASSERT(as_set(whole.rows()) == expected);
  RC_ASSERT(suffix.found() == (last_own && *last_own >= from));
  if (suffix.found()) RC_ASSERT(as_set(suffix.rows()) == expected);
  // Never another outbox's row, where the topic is this outbox's own or nothing is legacy.
  for (const auto& r : whole.rows()) {
    if (default_topic) RC_ASSERT(r.message_id.starts_with(k_own + "/"));
  }
}

// --- Lane adoption ----------------------------------------------------------------------

constexpr int k_model_lanes = 2;  // lanes 0 and 1 (shards 0-15)
constexpr int k_rows = 30;        // outbox rows 1..30, row id % 2 is its lane
constexpr std::size_t k_round = 3;

enum class Kind { claim, commit, settle, crash, takeover, other_commit };

struct Event {
  Kind kind;
  int relay;                  // 0 or 1
  int lane;                   // 0 or 1
  bool refresh = true;        // claim: the relay sees the leases as they are (else: stale)
  bool delete_fails = false;  // claim: the adoption's DELETE; settle: the round's DELETE
};

void showValue(const Event& e, std::ostream& os) {
  static const char* const names[] = {"claim", "commit",   "settle",
                                      "crash", "takeover", "other_commit"};
  os << names[static_cast<int>(e.kind)] << "(relay " << e.relay << ", lane " << e.lane
     << (e.refresh ? "" : ", stale view") << (e.delete_fails ? ", DELETE fails" : "") << ")";
}

rc::Gen<Event> gen_event() {
  return rc::gen::build<Event>(
      rc::gen::set(&Event::kind, rc::gen::weightedElement<Kind>({{5, Kind::claim},
                                                                 {5, Kind::commit},
                                                                 {4, Kind::settle},
                                                                 {1, Kind::crash},
                                                                 {3, Kind::takeover},
                                                                 {2, Kind::other_commit}})),
      rc::gen::set(&Event::relay, rc::gen::inRange(0, 2)),
      rc::gen::set(&Event::lane, rc::gen::inRange(0, k_model_lanes)),
      rc::gen::set(&Event::refresh, rc::gen::weightedElement<bool>({{4, true}, {1, false}})),
      rc::gen::set(&Event::delete_fails, rc::gen::weightedElement<bool>({{3, false}, {1, true}})));
}

struct Lease {
  int owner = 0;
  std::int64_t epoch = 1;
};

// One relay process of this outbox: its lane bookkeeping (the unit under test), the
// generation of the producer it opened per lane, its view of the leases, and its round.
struct Relay {
  LaneBook book;
  std::map<int, int> generation;  // lane -> its producer's
  LeaseView view;
  enum class stage { idle, claimed, committed } st = stage::idle;
  LeaseView round_view;                            // the view the round was claimed under
  std::map<int, std::vector<PublishedRow>> round;  // lane -> claimed, then committed rows
};

struct World {
  // Kafka
  std::map<int, std::vector<Record>> progress;        // lane -> committed records, oldest first
  std::map<int, int> generation;                      // lane -> the producer Kafka accepts
  std::map<int, std::vector<PublishedRow>> last_own;  // lane -> this outbox's last record
  // PostgreSQL
  std::map<std::int64_t, std::string> outbox;  // id -> message id
  std::map<int, Lease> leases;                 // lane -> lease of its shards
  // The log of this outbox's topic.
  std::map<std::int64_t, int> published;
  std::array<Relay, 2> relays;
  int commits = 0, recovered = 0, fenced = 0;  // what the run went through

  World() {
    for (int id = 1; id <= k_rows; ++id) outbox[id] = k_own + "/" + std::to_string(id);
    for (int lane = 0; lane < k_model_lanes; ++lane) leases[lane] = {lane % 2, 1};
  }

  LeaseView view_of(int r) const {
    LeaseView v;
    for (const auto& [lane, l] : leases) {
      if (l.owner != r) continue;
      for (int sh = lane * k_lane_shards; sh < (lane + 1) * k_lane_shards; ++sh) {
        v.epochs[sh] = l.epoch;
      }
    }
    return v;
  }
  // The fence of every outbox statement: `lane`'s lease still held at the view's epoch.
  bool holds(int r, const LeaseView& v, int lane) const {
    const auto it = v.epochs.find(lane * k_lane_shards);
    return it != v.epochs.end() && leases.at(lane).owner == r &&
           leases.at(lane).epoch == it->second;
  }
  void delete_rows(int r, const LeaseView& v, const std::vector<PublishedRow>& rows) {
    for (const auto& row : rows) {
      const auto it = outbox.find(row.id);
      if (it != outbox.end() && it->second == row.message_id &&
          holds(r, v, static_cast<int>(row.id % 2))) {
        outbox.erase(it);
      }
    }
  }

  void apply(const Event& e) {
    Relay& r = relays[static_cast<std::size_t>(e.relay)];
    switch (e.kind) {
      case Kind::claim:
        if (r.st == Relay::stage::idle) claim(e.relay, r, e);
        break;
      case Kind::commit:
        if (r.st == Relay::stage::claimed) commit(r);
        break;
      case Kind::settle:
        if (r.st != Relay::stage::committed) break;
        r.st = Relay::stage::idle;  // a failed DELETE: an exception, the loop goes on
        if (e.delete_fails) break;
        for (const auto& [lane, rows] : r.round) delete_rows(e.relay, r.round_view, rows);
        r.book.settled();
        break;
      case Kind::crash:  // SIGKILL; the restarted process takes its shards at new epochs
        r = Relay{};
        for (auto& [lane, l] : leases) {
          if (l.owner == e.relay) ++l.epoch;
        }
        break;
      case Kind::takeover:
        leases[e.lane] = {e.relay, leases[e.lane].epoch + 1};
        break;
      case Kind::other_commit: {  // the other outbox, same lane, same row ids
        std::vector<int> ids;
        for (int id = 1 + e.lane; id <= k_rows; id += 2 * (1 + e.relay)) ids.push_back(id);
        progress[e.lane].push_back({lane_key(k_other, e.lane), rows_of(k_other, ids)});
        break;
      }
    }
  }

  // adopt_lanes() then the claim: lanes follow the leases (opened ones fence their earlier
  // producers and read their last progress), what they name is deleted, then each ready lane
  // claims the head of its rows.
  void claim(int id, Relay& r, const Event& e) {
    if (e.refresh) r.view = view_of(id);
    for (const int lane : r.book.follow(r.view)) {
      r.generation[lane] = ++generation[lane];
      ProgressScan scan(lane_key(k_own, lane), legacy_progress_key(lane),
                        ProgressScan::legacy::own);
      for (const auto& rec : progress[lane]) {
        scan.add(rec.key, encode_progress(lane, "relay", rec.rows));
      }
      r.book.opened(lane, scan.found() ? scan.rows() : std::vector<PublishedRow>{});
    }
    if (e.delete_fails) return;  // the DELETE threw: nothing claimed, settled() not called
    const std::size_t before = outbox.size();
    delete_rows(id, r.view, r.book.unsettled());
    recovered += static_cast<int>(before - outbox.size());
    r.book.settled();
    r.round.clear();
    r.round_view = r.view;
    for (int lane = 0; lane < k_model_lanes; ++lane) {
      if (!r.book.ready(lane) || !holds(id, r.view, lane)) continue;
      std::vector<PublishedRow> rows;
      for (const auto& [row, message_id] : outbox) {
        if (row % 2 == lane && rows.size() < k_round) rows.push_back({row, message_id});
      }
      if (!rows.empty()) r.round[lane] = std::move(rows);
    }
    r.st = r.round.empty() ? Relay::stage::idle : Relay::stage::claimed;
  }

  // Each lane's transaction: the rows and the progress record, committed unless a newer
  // producer of the lane fenced this one.
  void commit(Relay& r) {
    for (auto it = r.round.begin(); it != r.round.end();) {
      const int lane = it->first;
      if (r.generation[lane] != generation[lane]) {
        r.book.broke(lane);  // PRODUCER_FENCED: aborted
        ++fenced;
        it = r.round.erase(it);
        continue;
      }
      // The property: the rows the lane's last committed transaction published are out of
      // the outbox before its next transaction.
      for (const auto& row : last_own[lane]) {
        const auto o = outbox.find(row.id);
        RC_ASSERT(!(o != outbox.end() && o->second == row.message_id));
      }
      for (const auto& row : it->second) RC_ASSERT(++published[row.id] == 1);
      progress[lane].push_back({lane_key(k_own, lane), it->second});
      last_own[lane] = it->second;
      r.book.committed(lane, it->second);
      ++commits;
      ++it;
    }
    r.st = Relay::stage::committed;
  }
};

// However claims, commits, failed DELETEs, crashes, takeovers (seen at once or late) and the
// other outbox's commits on the same progress partitions interleave, a lane's committed rows
// leave the outbox before its next transaction, and no row reaches the log twice.
RC_GTEST_PROP(RelayLaneProperty, ALanesCommittedRowsAreDeletedBeforeItsNextTransaction, ()) {
  const auto events = *rc::gen::container<std::vector<Event>>(gen_event());
  World w;
  for (const auto& e : events) w.apply(e);
  RC_CLASSIFY(w.commits > 0, "committed");
  RC_CLASSIFY(w.recovered > 0, "a lane's next owner deleted rows its last transaction left");
  RC_CLASSIFY(w.fenced > 0, "a stale producer fenced");
}

// LaneBook's own rules, by example.
TEST(RelayLaneBook, ALaneWithUnsettledRowsRunsNoTransactionUntilTheyAreSettled) {
  LaneBook book;
  LeaseView view;
  for (int sh = 0; sh < k_lane_shards; ++sh) view.epochs[sh] = 7;
  EXPECT_EQ(book.follow(view), std::vector<int>{0});
  EXPECT_FALSE(book.ready(0));  // not opened yet
  book.opened(0, rows_of(k_own, {1, 2}));
  EXPECT_FALSE(book.ready(0));  // its last transaction's rows may still be in the outbox
  EXPECT_EQ(book.unsettled(), rows_of(k_own, {1, 2}));
  book.settled();
  EXPECT_TRUE(book.ready(0));
  book.committed(0, rows_of(k_own, {3}));
  EXPECT_FALSE(book.ready(0));
  EXPECT_TRUE(book.follow(view).empty());  // held at the same epochs: nothing to open
  EXPECT_EQ(book.unsettled(), rows_of(k_own, {3}));
  book.broke(0);
  EXPECT_EQ(book.follow(view), std::vector<int>{0});  // a new producer, same unsettled rows
  book.opened(0, rows_of(k_own, {3}));
  EXPECT_EQ(as_set(book.unsettled()), as_set(rows_of(k_own, {3})));
  view.epochs[3] = 8;  // a shard of the lane taken again: the lane is opened afresh
  EXPECT_EQ(book.follow(view), std::vector<int>{0});
  EXPECT_TRUE(book.unsettled().empty());  // the progress topic says what to delete
  view.epochs.erase(3);
  EXPECT_TRUE(book.follow(view).empty());
  EXPECT_FALSE(book.is_held(0));
}

}  // namespace
