// Property tests of the standby gate's decisions (relay/src/standby_round) against a simple
// model of a primary, its standbys and WAL archivers: random interleavings of writes (outbox
// rows and other WAL), flush reports, the relay's claims and its polls of pg_stat_replication.
// A round's own target is the insert position read after the claim that first saw its rows;
// the properties: a round goes only once N counted standbys flushed its own target (and every
// row in it is at or below that), and a poll that finds its target flushed publishes it (no
// fresh, further target under continuous writes). RapidCheck; the seed is printed on failure
// and RC_PARAMS="seed=N" replays it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "standby_round.hpp"

namespace {

using txbox::relay::Lsn;
using txbox::relay::RowRef;
using txbox::relay::StandbyRounds;
using txbox::relay::Walsender;

enum class Kind { write, flush, claim, poll };

struct Event {
  Kind kind = Kind::write;
  int rows = 0;     // write: outbox rows committed (0: other WAL only)
  int bytes = 1;    // write: WAL per record
  int who = 0;      // flush: which standby
  int percent = 0;  // flush: how far towards the insert position
  int batch = 1;    // claim: rows claimed at most
};

// How RapidCheck prints a counterexample's events.
void showValue(const Event& e, std::ostream& os) {
  switch (e.kind) {
    case Kind::write:
      os << "write(rows " << e.rows << ", bytes " << e.bytes << ")";
      break;
    case Kind::flush:
      os << "flush(standby " << e.who << ", " << e.percent << "%)";
      break;
    case Kind::claim:
      os << "claim(batch " << e.batch << ")";
      break;
    case Kind::poll:
      os << "poll";
      break;
  }
}

// A broken property: a std::logic_error, which RapidCheck reports (and shrinks) and GoogleTest
// shows with its text.
void require(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error(what);
}

rc::Gen<Event> gen_event() {
  return rc::gen::build<Event>(
      rc::gen::set(&Event::kind,
                   rc::gen::element(Kind::write, Kind::flush, Kind::claim, Kind::poll)),
      rc::gen::set(&Event::rows, rc::gen::inRange(0, 4)),
      rc::gen::set(&Event::bytes, rc::gen::inRange(1, 200)),
      rc::gen::set(&Event::who, rc::gen::inRange(0, 3)),
      rc::gen::set(&Event::percent, rc::gen::inRange(0, 101)),
      rc::gen::set(&Event::batch, rc::gen::inRange(1, 8)));
}

struct OutboxRow {
  RowRef ref;
  Lsn commit = 0;
};

// The primary, its standbys (counted) and its archivers (never counted).
struct Primary {
  Lsn insert = 0x3000000;
  std::int64_t next_id = 1;
  std::vector<OutboxRow> outbox;  // by id
  std::vector<Walsender> standbys;
  std::vector<Walsender> others;  // archivers, a base backup, a logical walsender

  void write(const Event& e) {
    insert += static_cast<Lsn>(e.bytes);  // other WAL, e.g. a business table's rows
    for (int i = 0; i < e.rows; ++i) {
      insert += static_cast<Lsn>(e.bytes);
      const auto id = next_id++;
      outbox.push_back({{id, "m" + std::to_string(id)}, insert});
    }
    // Archivers stream synchronously: always flushed up to the insert position.
    for (auto& w : others) {
      if (w.flush_lsn) w.flush_lsn = insert;
    }
  }
  void flush(const Event& e) {
    auto& w = standbys[static_cast<std::size_t>(e.who) % standbys.size()];
    const Lsn from = *w.flush_lsn;
    w.flush_lsn = from + (insert - from) * static_cast<Lsn>(e.percent) / 100;
  }
  // The position `required` counted standbys flushed (the N-th highest flush).
  [[nodiscard]] Lsn flushed_by(int required) const {
    std::vector<Lsn> f;
    for (const auto& w : standbys) f.push_back(*w.flush_lsn);
    std::sort(f.rbegin(), f.rend());
    return f[static_cast<std::size_t>(required) - 1];
  }
  [[nodiscard]] std::vector<Walsender> walsenders() const {
    auto all = standbys;
    all.insert(all.end(), others.begin(), others.end());
    return all;
  }
  [[nodiscard]] Lsn commit_of(const RowRef& r) const {
    for (const auto& row : outbox) {
      if (row.ref == r) return row.commit;
    }
    throw std::logic_error("a published row is not in the outbox");
  }
};

// The model of a round: the insert position read after the claim that first saw its rows,
// kept while a later claim sees some of them again; those rows only may go with it.
struct ModelRound {
  Lsn target = 0;
  std::set<RowRef> refs;
};

struct Scenario {
  int required = 1;
  bool named = false;  // relay.standby_names set
  Primary primary;
  StandbyRounds rounds;
  std::optional<ModelRound> held;            // the model's round, also between passes
  std::optional<StandbyRounds::Round> pass;  // the pass in progress (claimed, not yet over)
  std::size_t published = 0;

  Scenario(int n, int standbys, bool names)
      : required(n),
        named(names),
        rounds(n, names ? std::vector<std::string>{"node0", "node1", "node2"}
                        : std::vector<std::string>{}) {
    for (int i = 0; i < standbys; ++i) {
      primary.standbys.push_back({.application_name = "node" + std::to_string(i),
                                  .client = "10.0.0." + std::to_string(i + 1),
                                  .state = "streaming",
                                  .flush_lsn = primary.insert,
                                  .logical = false});
    }
    const std::string archiver = named ? "barman_receive_wal" : "pg_receivewal";
    primary.others = {
        {.application_name = archiver,
         .client = "10.0.1.1",
         .state = "streaming",
         .flush_lsn = primary.insert,
         .logical = false},
        {.application_name = "",
         .client = "10.0.1.2",
         .state = "backup",
         .flush_lsn = primary.insert,
         .logical = false},
        {.application_name = "debezium",
         .client = "10.0.1.3",
         .state = "streaming",
         .flush_lsn = primary.insert,
         .logical = true},
    };
  }

  void claim(int batch) {
    pass.reset();  // a pass in progress timed out: its round is held
    std::vector<RowRef> claimed;
    for (const auto& row : primary.outbox) {
      if (static_cast<int>(claimed.size()) == batch) break;
      claimed.push_back(row.ref);
    }
    if (claimed.empty()) {
      rounds.nothing_claimed();
      held.reset();
      return;
    }
    // The model: a held round some of whose rows are claimed again keeps its target.
    std::set<RowRef> again;
    if (held) {
      for (const auto& r : claimed) {
        if (held->refs.contains(r)) again.insert(r);
      }
    }
    if (again.empty()) {
      held = ModelRound{primary.insert, {claimed.begin(), claimed.end()}};
    } else {
      held->refs = again;
    }
    pass = rounds.claimed(claimed, primary.insert, "primary");
    for (const auto& r : pass->refs) {
      require(std::find(claimed.begin(), claimed.end(), r) != claimed.end(),
              "the round has a row the pass did not claim");
    }
  }

  void poll() {
    if (!pass) return;
    const auto c = rounds.check(pass->target, primary.walsenders());
    const Lsn flushed = primary.flushed_by(required);
    // A round goes only once its own target is flushed by N counted standbys, and so is every
    // row in it (no phantom after a failover to any of them)...
    if (c.pass) {
      require(flushed >= held->target, "published before its own target was flushed");
      for (const auto& r : pass->refs) {
        require(primary.commit_of(r) <= flushed, "published a row the standbys do not have");
      }
      for (const auto& r : held->refs) {
        require(std::find(pass->refs.begin(), pass->refs.end(), r) != pass->refs.end(),
                "published part of a round");
      }
    }
    // ... and a poll that finds its own target flushed publishes it.
    require(c.pass || flushed < held->target,
            "held a round whose own target " + txbox::relay::format_lsn(held->target) +
                " the standbys flushed (" + txbox::relay::format_lsn(flushed) + "): waited for " +
                txbox::relay::format_lsn(pass->target));
    if (!c.pass) return;
    std::erase_if(primary.outbox, [&](const OutboxRow& row) {
      return std::find(pass->refs.begin(), pass->refs.end(), row.ref) != pass->refs.end();
    });
    published += pass->refs.size();
    rounds.published();
    held.reset();
    pass.reset();
  }

  void apply(const Event& e) {
    switch (e.kind) {
      case Kind::write:
        primary.write(e);
        break;
      case Kind::flush:
        primary.flush(e);
        break;
      case Kind::claim:
        claim(e.batch);
        break;
      case Kind::poll:
        poll();
        break;
    }
  }
};

}  // namespace

// Any interleaving of writes, flush reports, claims and polls, with N of 1-3 standbys counted
// (by relay.standby_names or by default) beside WAL archivers flushed at the insert position:
// a round is published only after its own target is flushed by N counted standbys, at once
// when a poll finds it flushed, and once the standbys catch up the outbox drains.
RC_GTEST_PROP(StandbyGateProperty, ARoundGoesOnceItsOwnTargetIsFlushedByNCountedStandbys, ()) {
  const int required = *rc::gen::inRange(1, 3);
  const int standbys = *rc::gen::inRange(required, 4);
  const bool named = *rc::gen::arbitrary<bool>();
  const auto events = *rc::gen::container<std::vector<Event>>(gen_event());
  Scenario s(required, standbys, named);
  for (const auto& e : events) s.apply(e);
  // The standbys catch up and writes stop: every row goes, a round per pass.
  for (std::size_t i = 0; i < s.primary.standbys.size(); ++i) {
    s.apply({.kind = Kind::flush, .who = static_cast<int>(i), .percent = 100});
  }
  const std::size_t left = s.primary.outbox.size();
  for (std::size_t pass = 0; pass <= left + 1 && !s.primary.outbox.empty(); ++pass) {
    s.apply({.kind = Kind::claim, .batch = 4});
    s.apply({.kind = Kind::poll});
  }
  require(s.primary.outbox.empty(), "rows left once the standbys caught up");
}

// The defect of issue 25 (no publish under sustained lag) as a fixed sequence: the standby
// flushes each round's point a little after the next write, and every pass must not chase a
// fresh insert position.
TEST(StandbyGateRounds, AHeldRoundKeepsItsTargetUnderContinuousWrites) {
  Scenario s(1, 1, false);
  s.apply({.kind = Kind::write, .rows = 2, .bytes = 100});
  s.apply({.kind = Kind::claim, .batch = 10});
  const Lsn first = s.held->target;
  s.apply({.kind = Kind::poll});
  EXPECT_EQ(s.published, 0u);
  s.apply({.kind = Kind::write, .rows = 2, .bytes = 100});  // the writer goes on
  s.apply({.kind = Kind::flush, .who = 0, .percent = 100});
  s.apply({.kind = Kind::write, .rows = 2, .bytes = 100});  // the standby is one write behind
  s.apply({.kind = Kind::claim, .batch = 10});
  ASSERT_TRUE(s.pass.has_value());
  EXPECT_EQ(s.pass->target, first);
  EXPECT_TRUE(s.pass->kept);
  EXPECT_EQ(s.pass->refs.size(), 2u) << "the rows after the held round's point wait";
  s.apply({.kind = Kind::poll});
  EXPECT_EQ(s.published, 2u);
}

// Which walsenders count (issue 25: WAL archivers counted as standbys let phantoms through).
TEST(StandbyGateRounds, WalArchiversBaseBackupsAndLogicalWalsendersDoNotCount) {
  using txbox::relay::not_counted;
  const auto ws = [](std::string name, std::string state, bool logical = false) {
    return Walsender{.application_name = std::move(name),
                     .client = "10.0.0.1",
                     .state = std::move(state),
                     .flush_lsn = Lsn{1},
                     .logical = logical};
  };
  EXPECT_EQ(not_counted(ws("node1", "streaming"), {}), std::nullopt);
  EXPECT_EQ(not_counted(ws("", "catchup"), {}), std::nullopt);
  EXPECT_EQ(not_counted(ws("pg_receivewal", "streaming"), {}), "a WAL archiver");
  EXPECT_EQ(not_counted(ws("pg_basebackup", "streaming"), {}), "a WAL archiver");
  EXPECT_EQ(not_counted(ws("node1", "backup"), {}), "a base backup");
  EXPECT_EQ(not_counted(ws("debezium", "streaming", true), {}), "logical");
  auto no_flush = ws("node1", "streaming");
  no_flush.flush_lsn.reset();
  EXPECT_EQ(not_counted(no_flush, {}), "no flush position");
  // relay.standby_names: those names only, whatever the state.
  const std::vector<std::string> names{"node1", "node2"};
  EXPECT_EQ(not_counted(ws("node2", "streaming"), names), std::nullopt);
  EXPECT_EQ(not_counted(ws("barman_receive_wal", "streaming"), names),
            "not in relay.standby_names");
  EXPECT_EQ(not_counted(ws("node3", "streaming"), names), "not in relay.standby_names");
  EXPECT_EQ(not_counted(ws("node1", "streaming", true), names), "logical");
}

TEST(StandbyGateRounds, LsnTextRoundTrips) {
  using txbox::relay::format_lsn;
  using txbox::relay::parse_lsn;
  EXPECT_EQ(parse_lsn("16/B374D848"), (Lsn{0x16} << 32) | 0xB374D848);
  EXPECT_EQ(format_lsn(parse_lsn("0/3000060")), "0/3000060");
  EXPECT_EQ(format_lsn(parse_lsn("FFFFFFFF/FFFFFFFF")), "FFFFFFFF/FFFFFFFF");
  EXPECT_THROW(parse_lsn("3000060"), std::invalid_argument);
  EXPECT_THROW(parse_lsn("0/"), std::invalid_argument);
  EXPECT_THROW(parse_lsn("0/xyz"), std::invalid_argument);
}

// A held round is dropped when the server changes (a failover or restart: the id sequence may
// hand its ids out again) or when a claimed row has another message id under the same id.
TEST(StandbyGateRounds, AHeldRoundIsNotKeptOnAnotherServerOrForAnotherMessage) {
  StandbyRounds rounds(1, {});
  const std::vector<RowRef> rows{{1, "a"}, {2, "b"}};
  const auto first = rounds.claimed(rows, 100, "primary at t0");
  EXPECT_FALSE(first.kept);
  const auto again = rounds.claimed(rows, 200, "primary at t0");
  EXPECT_TRUE(again.kept);
  EXPECT_EQ(again.target, 100u);
  const auto other_server = rounds.claimed(rows, 300, "promoted at t1");
  EXPECT_FALSE(other_server.kept);
  EXPECT_EQ(other_server.target, 300u);
  const auto reused = rounds.claimed({{1, "x"}, {2, "y"}}, 400, "promoted at t1");
  EXPECT_FALSE(reused.kept);
  EXPECT_EQ(reused.target, 400u);
  rounds.published();
  EXPECT_FALSE(rounds.claimed({{1, "x"}}, 500, "promoted at t1").kept);
}
