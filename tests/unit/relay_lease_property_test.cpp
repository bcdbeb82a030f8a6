// Property tests of the at_least_once leases with the pipeline's book (relay/src/lease_table's
// surplus and claimable, relay/src/in_flight, relay/src/settle_plan) against a model of the
// database and of Kafka: random relays starting, stopping, dying and stalling, rows committed,
// claims, deliveries landing and acknowledgements arriving late, settles, time passing (each
// relay's lease tick runs when due, as in the relay's loop). The tick mirrors LeaseTable::tick
// (heartbeat, live count, renew by epoch, surplus given back, free or expired shards taken up
// to the fair share); only its SQL is modelled. RapidCheck; the seed is printed on failure
// and RC_PARAMS="seed=N" replays it.
// The model: relay_lease_model.hpp.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "relay_lease_model.hpp"

using namespace txbox::test::lease_model;

// Relays joining, leaving, dying, stalling and reconnecting beside rows in flight whose
// acknowledgements come late: no relay claims a shard another relay has rows in flight on while
// that relay's lease holds, per key the first publications follow the commit order, and no older
// copy of a key lands after a newer one (except from a relay stalled past its lease). Then, run
// undisturbed, they drain the outbox (a draining shard is given back once settled).
RC_GTEST_PROP(RelayLeaseProperty, InFlightShardsAreNeverTakenAndNoStaleCopyLands, ()) {
  const auto steps = *rc::gen::scale(3.0, rc::gen::container<std::vector<Step>>(gen_step()));
  World w;
  for (const auto& s : steps) w.apply(s);
  // Then everyone runs undisturbed until the outbox drains: the same properties hold.
  if (std::none_of(w.relays.begin(), w.relays.end(), [](const Relay& r) { return r.alive; })) {
    w.apply({Kind::start, 0, 0});
  }
  for (int round = 0; round < 200 && !w.outbox.empty(); ++round) {
    w.apply({Kind::advance, 0, 40});
    for (int r = 0; r < k_relays; ++r) {
      for (const Kind k : {Kind::claim, Kind::land, Kind::ack, Kind::settle}) {
        w.apply({k, r, 999});
      }
    }
  }
  RC_ASSERT(w.outbox.empty());
  // Per key, no older copy after a newer one that leaves the key behind (a replay of rows
  // published but not settled, by a relay that died or lost its connection, catches up).
  for (const auto& e : w.stale.episodes()) {
    RC_FAIL("stale copy: key " + e.key + " seq " + std::to_string(e.seq) + " after seq " +
            std::to_string(e.newest));
  }
  RC_TAG(w.excused_stale > 0 ? "stale copies after a stall" : "no stale copy",
         w.drained > 0 ? "shards kept until settled" : "none kept",
         steps.size() > 100 ? ">100 steps" : "<=100 steps");
}
