// Property tests of the relay's wake-up pacing (relay/src/wake_pacer) against a simple model
// of PostgreSQL's transactions: random interleavings of other transactions starting and
// ending, one writer taking its sequence value, its xid, then committing or rolling back, and
// the relay probing when the pacer asks. RapidCheck; the seed is printed on failure and
// RC_PARAMS="seed=N" replays it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "wake_pacer.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::DbSnapshot;
using txbox::relay::ProbeReading;
using txbox::relay::WakeOptions;
using txbox::relay::WakePacer;

// The database as the probe sees it: running xids, the newest completed one, the sequence.
struct Db {
  std::uint64_t next_xid = 100;
  std::uint64_t latest_completed = 99;
  std::set<std::uint64_t> running;
  std::int64_t last_value = 10;

  std::uint64_t begin() {
    running.insert(next_xid);
    return next_xid++;
  }
  void end(std::uint64_t xid) {
    running.erase(xid);
    latest_completed = std::max(latest_completed, xid);
  }
  // pg_current_snapshot(): xmax one past the newest completed, xip the running below it.
  [[nodiscard]] ProbeReading read() const {
    DbSnapshot s;
    s.xmax = latest_completed + 1;
    s.xmin = running.empty() ? s.xmax : std::min(*running.begin(), s.xmax);
    for (const auto x : running) {
      if (x < s.xmax) s.xip.push_back(x);
    }
    return {last_value, s};
  }
};

enum class Action { other_begins, other_ends, writer_step };

struct Step {
  int after_ms;
  Action action;
  int pick;  // which running transaction ends
};

struct World {
  Db db;
  std::vector<std::uint64_t> others;
  int writer_stage = 0;  // 0 before, 1 took its sequence value, 2 has its xid, 3 ended
  std::uint64_t writer_xid = 0;
  bool writer_commits = true;

  void apply(const Step& s) {
    switch (s.action) {
      case Action::other_begins:
        others.push_back(db.begin());
        break;
      case Action::other_ends:
        if (others.empty()) break;
        {
          const auto i = static_cast<std::size_t>(s.pick) % others.size();
          db.end(others[i]);
          others.erase(others.begin() + static_cast<std::ptrdiff_t>(i));
        }
        break;
      case Action::writer_step:
        if (writer_stage == 0) {
          ++db.last_value;  // nextval() comes before the insert assigns the xid
        } else if (writer_stage == 1) {
          writer_xid = db.begin();
        } else if (writer_stage == 2) {
          db.end(writer_xid);
        }
        writer_stage = std::min(writer_stage + 1, 3);
        break;
    }
  }
};

rc::Gen<Step> gen_step() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::after_ms, rc::gen::inRange(0, 40)),
      rc::gen::set(&Step::action,
                   rc::gen::element(Action::other_begins, Action::other_ends, Action::writer_step)),
      rc::gen::set(&Step::pick, rc::gen::inRange(0, 1000)));
}

const WakeOptions k_options{.probe_min = 1ms, .probe_max = 10ms, .poll_interval = 500ms};

// Every probe the pacer asks for up to `until`, against the database as it is now. Checks:
// a probe after the writer's commit within the horizon (poll_interval after the probe that
// saw the sequence move) is a sign; after the horizon nothing but a move is.
struct Relay {
  WakePacer pacer{k_options, clock::time_point{}};
  std::int64_t last_seen = 0;
  std::optional<clock::time_point> moved_at;  // the probe that saw the last move
  bool first = true;

  void probe_until(clock::time_point until, const World& w,
                   std::optional<clock::time_point> committed) {
    while (pacer.next_probe() <= until) {
      const auto now = pacer.next_probe();
      const auto r = w.db.read();
      const bool moved = !first && r.last_value != last_seen;
      if (moved || first) moved_at = now;  // the first probe opens a horizon too
      const bool due = pacer.probed(now, r);
      if (!first) pacer.claimed(now, false);  // the relay claims; the rows are not ours to count
      RC_ASSERT(!(moved && !due));
      const bool in_horizon = moved_at && now < *moved_at + k_options.poll_interval;
      if (committed && *committed <= now && in_horizon && unseen_commit) {
        RC_ASSERT(due);  // the first probe after the commit sees it
      }
      if (committed && *committed <= now) unseen_commit = false;
      if (!moved && !in_horizon && !first) RC_ASSERT(!due);
      last_seen = r.last_value;
      first = false;
    }
  }
  bool unseen_commit = true;
};

}  // namespace

// However the writer's steps interleave with other transactions (its xid below, at or above
// the newest completed one, other transactions ending before or after it), the first probe
// after its commit makes a claim due, as long as the commit falls in the horizon.
RC_GTEST_PROP(RelayWakeProperty, AWritersCommitIsSeenAtTheNextProbeWithinTheHorizon, ()) {
  const auto steps = *rc::gen::container<std::vector<Step>>(gen_step());
  World w;
  Relay relay;
  relay.probe_until(clock::time_point{}, w, std::nullopt);
  clock::time_point now{};
  std::optional<clock::time_point> committed;
  for (const auto& s : steps) {
    now += std::chrono::milliseconds(s.after_ms);
    relay.probe_until(now, w, committed);
    const int before = w.writer_stage;
    w.apply(s);
    if (before == 2 && w.writer_stage == 3) committed = now;
  }
  relay.probe_until(now + 600ms, w, committed);
}
