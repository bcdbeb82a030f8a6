// The relay benchmark's end-to-end runs: enqueue commit -> txbox::inbox handler through one
// txbox-relay and the broker, with the writers paced (latency at a load), and the capacity of
// the whole pipeline on this machine (unpaced writers, then a paced ramp).
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "relay_bench_process.hpp"
#include "relay_bench_support.hpp"

namespace bench {

/// One end-to-end run.
struct E2eRun {
  double offered = 0;   // msg/s the writers were paced to
  double achieved = 0;  // msg/s the writers committed
  long sent = 0, handled = 0;
  Pct lat;  // commit -> handler
  long relay_rss = 0, consumer_rss = 0;
  double transactions = -1, commit_s = -1;  // exactly_once: from the relay's /metrics

  /// The writers fell short of the offered rate (below 95% of it) or messages did not arrive.
  [[nodiscard]] bool overloaded() const { return achieved < 0.95 * offered || handled < sent; }
};

/// k_clients writers enqueue `rate` msg/s (one message per transaction) for `seconds`, one
/// relay (woken by `wakeup`, with `delivery`) forwards, a txbox::inbox consumer in a child
/// process (its own RSS) handles; `run` numbers the consumer's name.
E2eRun end_to_end(pqxx::connection& c, const std::string& topic, Wakeup wakeup, double rate,
                  double seconds, int run, Delivery delivery = Delivery::at_least_once);

/// One step of the capacity ramp.
struct RampStep {
  double offered = 0, achieved = 0;  // msg/s
  bool caught_up = false;            // every message at the handler 1 s after the step
  [[nodiscard]] bool sustained() const { return caught_up && achieved >= 0.95 * offered; }
};

/// The end-to-end capacity: the highest rate the pipeline sustains on this machine.
struct E2eCapacity {
  static constexpr double k_unpaced_s = 6;                   ///< the unpaced run
  static constexpr double k_step_s = 3;                      ///< each paced step
  static constexpr double k_ramp[] = {0.6, 0.75, 0.9, 1.0};  ///< steps, x the unpaced rate
  double unpaced_writers = 0, unpaced_handler = 0;           ///< msg/s, from 2 s in to the end
  std::vector<RampStep> steps;
  double capacity = 0;  ///< the highest step sustained
  long relay_rss = 0, consumer_rss = 0;
};

/// The same writers, one relay (probe) and the consumer: first unpaced for k_unpaced_s (the
/// writers' and the handler's rates, the lower one an upper bound), then paced steps at
/// fractions of that bound until one is not sustained.
E2eCapacity e2e_capacity(pqxx::connection& c, const std::string& topic, int run);

/// The latency phase's figures.
struct LatencyFigures {
  E2eCapacity capacity;
  double raw_rate = 0;                                   ///< the 50% rate
  Pct raw;                                               ///< raw produce->consume at it
  std::vector<std::pair<double, E2eRun>> probe, notify;  ///< (load, run) by load
  std::vector<std::pair<double, E2eRun>> eos;            ///< exactly_once, probe
  static constexpr double k_notify_margin_ms = 5;        ///< probe p99 <= NOTIFY p99 + this
  static constexpr double k_target_load = 0.5;           ///< where the target applies
  static constexpr double k_target_raw = 3;              ///< p99 <= this x raw p99 + 1 commit
  static constexpr double k_loads[] = {0.1, k_target_load, 0.8};
};

}  // namespace bench
