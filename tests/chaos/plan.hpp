// The chaos driver's fault schedule: which fault, when, against which target and for how
// long, all drawn from the seed, so that a seed names one schedule (the instants are
// relative to the start of the writes; what the processes are doing then varies from run
// to run, so a replay reproduces the schedule, not every interleaving).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

namespace chaos {

enum class Fault {
  relay_kill,      ///< SIGKILL a relay, restart it after a pause
  relay_stop,      ///< SIGSTOP a relay past its lease, then SIGCONT
  consumer_kill,   ///< SIGKILL a consumer, restart it after a pause
  consumer_stop,   ///< SIGSTOP a consumer past its session timeout, then SIGCONT
  broker_restart,  ///< SIGKILL the Kafka broker, start it again on the same data
  pg_restart,      ///< pg_ctl stop -m immediate, start again on the same data and port
  conn_reset,      ///< pg_terminate_backend of a relay's, a consumer's or everyone's backends
  // On the 3-broker cluster (--brokers 3) instead of broker_restart:
  leader_kill,   ///< SIGKILL the leader of a partition, start it again after a pause
  broker_pause,  ///< SIGSTOP a broker (sometimes past the controller's session), then SIGCONT
  disk_loss,     ///< a broker crashes and loses its disk; it rejoins empty and re-replicates
  pg_failover,   ///< kill the primary, promote the standby, attach a new one (--pg-failover)
};
inline constexpr std::size_t k_fault_kinds = 11;

inline std::string_view fault_name(Fault f) {
  constexpr std::array<std::string_view, k_fault_kinds> names = {
      "relay SIGKILL + restart",      "relay SIGSTOP past its lease",
      "consumer SIGKILL + restart",   "consumer SIGSTOP past session",
      "broker kill -9 + restart",     "PostgreSQL stop -m immediate",
      "connection reset (terminate)", "partition leader kill -9",
      "broker SIGSTOP + SIGCONT",     "broker disk loss",
      "PostgreSQL failover (promote)"};
  return names[static_cast<std::size_t>(f)];
}

/// Whether fault kind `f` is injected on a single broker (`cluster` false) or the cluster,
/// and with --pg-failover.
inline bool applies(Fault f, bool cluster, bool pg_failover = false) {
  switch (f) {
    case Fault::pg_failover:
      return pg_failover;
    case Fault::broker_restart:
      return !cluster;
    case Fault::leader_kill:
    case Fault::broker_pause:
    case Fault::disk_loss:
      return cluster;
    default:
      return true;
  }
}

struct PlannedFault {
  double at_s = 0;  ///< seconds after the writes started
  Fault kind = Fault::relay_kill;
  std::uint64_t pick = 0;  ///< chooses the target among those eligible when it fires
  double down_s = 0;       ///< pause before restart / SIGCONT / server start
};

/// `count` faults at uniform random instants in [from_s, to_s], sorted. With count >= the
/// number of kinds that apply (`cluster`: the 3-broker kinds; `pg_failover`), every one
/// occurs at least once; the rest are drawn by weight. A SIGSTOP lasts 0.5-3 s longer than
/// `lease_s` (relay) or `session_s` (consumer); a broker's lasts 1-14 s (the controller
/// fences it after 9 s). Without either flag a seed gives the same schedule as before them.
inline std::vector<PlannedFault> make_plan(std::uint64_t seed, int count, double from_s,
                                           double to_s, double lease_s, double session_s,
                                           bool cluster = false, bool pg_failover = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> when(from_s, to_s);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // relay_kill, relay_stop, consumer_kill, consumer_stop, broker, pg, conn_reset, then the
  // cluster's: leader_kill, broker_pause, disk_loss; then pg_failover
  std::array<double, k_fault_kinds> weights = {3, 2, 3, 1, 2, 2, 3, 3, 2, 1, 2};
  std::vector<Fault> kinds;
  for (std::size_t k = 0; k < k_fault_kinds; ++k) {
    if (!applies(static_cast<Fault>(k), cluster, pg_failover)) weights[k] = 0;
  }
  const auto applicable = static_cast<int>(
      std::count_if(weights.begin(), weights.end(), [](double w) { return w > 0; }));
  if (count >= applicable) {
    for (std::size_t k = 0; k < k_fault_kinds; ++k) {
      if (weights[k] > 0) kinds.push_back(static_cast<Fault>(k));
    }
  }
  std::discrete_distribution<int> weighted(weights.begin(), weights.end());
  while (static_cast<int>(kinds.size()) < count) kinds.push_back(static_cast<Fault>(weighted(rng)));
  std::shuffle(kinds.begin(), kinds.end(), rng);
  std::vector<PlannedFault> plan;
  for (const Fault kind : kinds) {
    PlannedFault f;
    f.at_s = when(rng);
    f.kind = kind;
    f.pick = rng();
    switch (kind) {
      case Fault::relay_stop:
        f.down_s = lease_s + 0.5 + 2.5 * unit(rng);
        break;
      case Fault::consumer_stop:
        f.down_s = session_s + 0.5 + 2.5 * unit(rng);
        break;
      case Fault::broker_restart:
      case Fault::pg_restart:
      case Fault::leader_kill:
      case Fault::pg_failover:  // until the new standby is attached
        f.down_s = 0.5 + 3.5 * unit(rng);
        break;
      case Fault::broker_pause:
        f.down_s = 1 + 13 * unit(rng);
        break;
      case Fault::disk_loss:
      case Fault::conn_reset:
        f.down_s = 0;
        break;
      default:
        f.down_s = 0.2 + 2.8 * unit(rng);
        break;
    }
    plan.push_back(f);
  }
  std::sort(plan.begin(), plan.end(),
            [](const PlannedFault& a, const PlannedFault& b) { return a.at_s < b.at_s; });
  return plan;
}

}  // namespace chaos
