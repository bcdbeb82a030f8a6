// A model of the database and of Kafka for the at_least_once lease property test
// (relay_lease_property_test.cpp): relays with their lease table's surplus and claimable
// (relay/src/lease_table), their in-flight book (relay/src/in_flight) and settle
// classification (relay/src/settle_plan); random steps change the world. The tick mirrors
// LeaseTable::tick (heartbeat, live count, renew by epoch, surplus given back, free or
// expired shards taken up to the fair share); only its SQL is modelled.
#pragma once

#include <rapidcheck.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "../harness/stale_copies.hpp"
#include "in_flight.hpp"
#include "lease_table.hpp"
#include "settle_plan.hpp"

namespace txbox::test::lease_model {

using namespace std::chrono_literals;
using txbox::relay::clock;
using txbox::relay::InFlight;
using txbox::relay::LeaseView;
using txbox::relay::Outcome;
using txbox::relay::Row;

constexpr int k_shards = 8;
constexpr int k_keys = 10;  // key k lives in shard k % k_shards
constexpr int k_relays = 3;
constexpr int k_batch = 2;  // rows per shard and claim
constexpr auto k_ttl = 300ms;
constexpr auto k_budget = k_ttl / 3;  // the relay's delivery budget
const clock::time_point k_never = clock::time_point::min();

enum class Kind {
  commit,
  start,
  stop,
  kill,
  stall,
  reconnect,
  advance,
  claim,
  land,
  ack,
  settle,
  settle_fails
};

struct Step {
  Kind kind = Kind::commit;
  int relay = 0;
  int arg = 0;
};

// How RapidCheck prints a step of a counterexample.
inline void showValue(const Step& s, std::ostream& os) {
  static const char* const names[] = {"commit",  "start", "stop", "kill", "stall",  "reconnect",
                                      "advance", "claim", "land", "ack",  "settle", "settle_fails"};
  os << names[static_cast<int>(s.kind)] << "(relay " << s.relay << ", " << s.arg << ")";
}

struct Lease {
  int owner = -1;
  std::int64_t epoch = 0;
  clock::time_point expires = k_never;
};

struct OutboxRow {
  int key = 0;
  int seq = 0;
};

// A message handed to a relay's Kafka client.
struct Message {
  std::uint32_t round = 0;
  std::size_t index = 0;
  int key = 0, seq = 0, shard = 0;
  bool landed = false;
  bool excused = false;  // its relay lost the shard by expiry during a stall
};

struct Relay {
  bool alive = false;
  bool joined = false;
  clock::time_point stalled_until{};
  std::vector<std::pair<clock::time_point, clock::time_point>> stalls;  // from, until
  clock::time_point next_tick{};
  LeaseView view;
  InFlight book;
  std::uint32_t round = 0;
  std::deque<Message> producer;                    // in the order handed over
  std::map<int, clock::time_point> renewed_until;  // per shard: the expiry it last wrote
};

struct World {
  clock::time_point now{};
  std::map<std::int64_t, OutboxRow> outbox;  // by id: commit order
  std::int64_t next_id = 1;
  std::array<int, k_keys> next_seq{};
  std::array<Lease, k_shards> leases{};
  std::map<int, clock::time_point> seen;  // heartbeats
  std::array<Relay, k_relays> relays{};
  // The log: per key, the highest seq landed and how many were first published.
  std::array<int, k_keys> highest{};
  std::array<int, k_keys> first_published{};
  int excused_stale = 0;
  int drained = 0;                 // ticks that kept shards in flight beyond the share
  txbox::test::StaleCopies stale;  // the log without the excused copies

  World() {
    highest.fill(-1);
    relays[0].alive = true;  // one relay from the start; the others join by steps
  }

  [[nodiscard]] bool runs(int r) const { return relays[r].alive && relays[r].stalled_until <= now; }

  // LeaseTable::tick with Kafka reachable, the in-flight shards as `busy`.
  void tick(int r) {
    Relay& me = relays[r];
    seen[r] = now;
    me.next_tick = now + k_ttl / 3;
    if (!me.joined) {
      me.joined = true;
      return;
    }
    int live = 0;
    for (const auto& [who, at] : seen) live += at > now - k_ttl ? 1 : 0;
    const int target = txbox::relay::fair_share(live, k_shards);
    std::map<int, std::int64_t> kept;
    for (const int sh : me.book.shards()) {  // keep_busy: in flight, forgotten, still ours
      Lease& l = leases[sh];
      if (me.view.epochs.contains(sh) || l.owner != r || l.expires <= now) continue;
      l.expires = now + k_ttl;
      me.renewed_until[sh] = l.expires;
      kept[sh] = l.epoch;
    }
    for (const auto& [sh, ep] : me.view.epochs) {
      Lease& l = leases[sh];
      if (l.owner == r && l.epoch == ep && l.expires > now) {
        l.expires = now + k_ttl;
        me.renewed_until[sh] = l.expires;
        kept[sh] = ep;
      }
    }
    std::set<int> draining;
    if (static_cast<int>(kept.size()) > target) {
      auto over = txbox::relay::surplus(kept, target, me.book.shards());
      for (const auto sh : over.give_back) {
        leases[sh] = {-1, leases[sh].epoch, k_never};
        kept.erase(static_cast<int>(sh));
      }
      draining = std::move(over.draining);
      drained += draining.empty() ? 0 : 1;
    } else {
      // Free or expired shards, and our own the view forgot; our own first.
      for (const bool own : {true, false}) {
        for (int sh = 0; sh < k_shards && static_cast<int>(kept.size()) < target; ++sh) {
          Lease& l = leases[sh];
          if (kept.contains(sh) || (l.owner == r) != own) continue;
          if (!(l.owner < 0 || l.expires <= now || l.owner == r)) continue;
          if (l.owner >= 0 && l.owner != r) {
            // Taken over after it expired while its owner stalled: what that owner still has
            // in flight for it is excused (Kafka cannot fence a non-transactional producer).
            Relay& o = relays[l.owner];
            const bool stalled = std::any_of(o.stalls.begin(), o.stalls.end(), [&](auto st) {
              return st.first <= l.expires && l.expires <= st.second;
            });
            for (auto& m : o.producer) m.excused |= stalled && m.shard == sh;
          }
          l = {r, l.epoch + 1, now + k_ttl};
          me.renewed_until[sh] = l.expires;
          kept[sh] = l.epoch;
        }
      }
    }
    me.view.epochs = std::move(kept);
    me.view.draining = std::move(draining);
    me.view.valid_until = now + k_ttl - k_ttl / 5;
  }

  void tick_if_due(int r) {
    if (runs(r) && relays[r].next_tick <= now) tick(r);
  }

  void claim(int r) {
    Relay& me = relays[r];
    if (!me.view.covers(now, k_budget)) return;
    const LeaseView view = txbox::relay::claimable(me.view, me.book.shards());
    std::vector<Row> rows;
    for (const auto& [sh, ep] : view.epochs) {
      const Lease& l = leases[sh];
      if (l.owner != r || l.epoch != ep || l.expires <= now) continue;  // the claim's fence
      int taken = 0;
      for (const auto& [id, row] : outbox) {
        if (row.key % k_shards != sh) continue;
        if (taken++ == k_batch) break;
        // Property: a shard with rows in flight is never claimed by another relay while the
        // lease those rows were sent under holds.
        for (int other = 0; other < k_relays; ++other) {
          const Relay& o = relays[other];
          if (other == r || !o.alive || !o.book.shards().contains(sh)) continue;
          RC_ASSERT(now >= o.renewed_until.at(sh));
        }
        Row x;
        x.id = id;
        x.key = std::to_string(row.key);
        x.payload = std::to_string(row.seq);
        x.topic = "t";
        x.shard = sh;
        x.bytes = 1;
        rows.push_back(std::move(x));
      }
    }
    if (rows.empty()) return;
    const std::uint32_t round = ++me.round;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      me.producer.push_back({round, i, std::stoi(*rows[i].key), std::stoi(rows[i].payload),
                             rows[i].shard, false, false});
    }
    const std::size_t n = rows.size();
    me.book.add(round, std::move(rows), me.view, std::vector<Outcome>(n));
  }

  // The next `n` messages of relay r's client reach the log (in order: one partition per key).
  void land(int r, int n) {
    for (auto& m : relays[r].producer) {
      if (n == 0) break;
      if (m.landed) continue;
      m.landed = true;
      --n;
      if (m.excused) {
        // Its relay lost the shard by expiry while stalled: Kafka cannot fence this copy.
        excused_stale += m.seq < highest[m.key] ? 1 : 0;
      } else {
        stale.add(std::to_string(m.key), m.seq, 0);
      }
      if (m.seq >= first_published[m.key]) {
        // Property: per key, the order of first publication is the commit order.
        RC_ASSERT(m.seq == first_published[m.key]);
        ++first_published[m.key];
      }
      highest[m.key] = std::max(highest[m.key], m.seq);
    }
  }

  // The acknowledgements of the next `n` landed messages reach relay r.
  void ack(int r, int n) {
    auto& producer = relays[r].producer;
    while (n-- > 0 && !producer.empty() && producer.front().landed) {
      relays[r].book.report(producer.front().round, producer.front().index, Outcome::acked());
      producer.pop_front();
    }
  }

  // The relay's settle: what the book gives, classified, deleted under the epoch fence.
  void settle(int r) {
    auto ready = relays[r].book.take_ready();
    const auto plan = txbox::relay::classify_round(ready.rows, ready.outcomes, 0);
    RC_ASSERT(plan.retry.empty());
    for (const auto id : plan.delete_ids) {
      const auto row = outbox.find(id);
      if (row == outbox.end()) continue;
      const int sh = row->second.key % k_shards;
      const Lease& l = leases[sh];
      const auto ep = ready.view.epochs.find(sh);
      if (l.owner == r && ep != ready.view.epochs.end() && l.epoch == ep->second &&
          l.expires > now) {
        outbox.erase(row);
      }
    }
  }

  // SIGTERM: the reports come within the grace, the rows settle, the leases go back.
  void stop(int r) {
    land(r, 1'000'000);
    ack(r, 1'000'000);
    settle(r);
    for (auto& l : leases) {
      if (l.owner == r) l = {-1, l.epoch, k_never};
    }
    seen.erase(r);
    relays[r] = Relay{};
  }

  void apply(const Step& s) {
    const int r = s.relay;
    switch (s.kind) {
      case Kind::commit: {
        const int key = s.arg % k_keys;
        outbox[next_id++] = {key, next_seq[key]++};
        return;
      }
      case Kind::advance: {
        // Time passes; a relay whose stall ends meanwhile ticks (when due) as it resumes.
        const auto until = now + std::chrono::milliseconds(1 + s.arg % 80);
        while (now < until) {
          auto next = until;
          for (const auto& x : relays) {
            if (x.alive && x.stalled_until > now) next = std::min(next, x.stalled_until);
          }
          now = next;
          for (int i = 0; i < k_relays; ++i) tick_if_due(i);
        }
        return;
      }
      case Kind::start:
        if (!relays[r].alive) {
          relays[r] = Relay{};
          relays[r].alive = true;
        }
        return;
      case Kind::kill:  // SIGKILL: what the client had not sent is gone; the leases expire
        if (relays[r].alive) relays[r] = Relay{};
        return;
      default:
        break;
    }
    if (!runs(r)) return;
    tick_if_due(r);
    switch (s.kind) {
      case Kind::stop:
        stop(r);
        return;
      case Kind::stall:  // SIGSTOP: the loop and the client stop, up to twice the lease
        relays[r].stalled_until = now + std::chrono::milliseconds(1 + s.arg % 600);
        relays[r].stalls.emplace_back(now, relays[r].stalled_until);
        return;
      case Kind::reconnect:  // the connection was lost: the view is forgotten (LeaseTable::forget)
        relays[r].view = {};
        relays[r].next_tick = {};
        return;
      case Kind::claim:
        claim(r);
        return;
      case Kind::land:
        land(r, 1 + s.arg % 4);
        return;
      case Kind::ack:
        ack(r, 1 + s.arg % 4);
        return;
      case Kind::settle:
        settle(r);
        return;
      case Kind::settle_fails:  // the settle's transaction fails (the database went away)
        relays[r].book.take_ready();
        return;
      default:
        return;
    }
  }
};

inline rc::Gen<Step> gen_step() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::kind, rc::gen::weightedElement<Kind>({{5, Kind::commit},
                                                                {2, Kind::start},
                                                                {1, Kind::stop},
                                                                {1, Kind::kill},
                                                                {1, Kind::stall},
                                                                {1, Kind::reconnect},
                                                                {6, Kind::advance},
                                                                {6, Kind::claim},
                                                                {3, Kind::land},
                                                                {3, Kind::ack},
                                                                {4, Kind::settle},
                                                                {1, Kind::settle_fails}})),
      rc::gen::set(&Step::relay, rc::gen::inRange(0, k_relays)),
      rc::gen::set(&Step::arg, rc::gen::inRange(0, 1000)));
}

}  // namespace txbox::test::lease_model
