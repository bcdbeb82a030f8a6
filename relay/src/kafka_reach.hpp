// Whether this relay can reach Kafka, and what that allows: a pure state machine over the
// outcomes of a probe (a metadata request, KafkaProbe) and an injected clock (unit-tested in
// tests/unit/relay_reach_test). Internal to the relay.
//
// A relay takes no shard before the brokers have answered it once: a relay started with a
// wrong kafka.bootstrap.servers beside healthy ones would otherwise take its fair share and
// hold those shards' messages back. While the brokers do not answer it claims nothing, does
// not heartbeat (the other relays stop counting it after the lease ttl, and take a larger
// share), and is not ready. Lost for longer than give_back_after, it gives back the shards
// with nothing in flight, if other relays are live (the lease table checks that). Rows in
// flight are never given up: their shards stay until Kafka acknowledges them.
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string>

#include "round.hpp"

namespace txbox::relay {

struct ReachOptions {
  /// How long a probe waits for an answer.
  std::chrono::milliseconds probe_timeout{2'000};
  /// Between probes while the brokers answer.
  std::chrono::milliseconds probe_interval{2'000};
  /// Between probes while they do not (each failed probe took probe_timeout already).
  std::chrono::milliseconds retry_interval{250};
  /// Lost this long (from the first failed probe): the idle shards go back. More than the
  /// lease ttl plus the time a probe takes to notice a loss, so that when Kafka is lost for
  /// every relay, each one sees the others' heartbeats stale and keeps its shards.
  std::chrono::milliseconds give_back_after{14'000};
};

/// The probes' settings for a lease ttl.
[[nodiscard]] ReachOptions reach_options(std::chrono::milliseconds lease_ttl);

/// What the relay may do now.
struct ReachVerdict {
  /// The last probe was answered: heartbeat, take shards, claim; ready.
  bool reachable = false;
  /// Not reachable for give_back_after since the first failed probe.
  bool give_back = false;
  /// Why not reachable: the last probe's error; empty before the first probe ended.
  std::string why;
};

class KafkaReach {
 public:
  explicit KafkaReach(ReachOptions options) : m_opt(options) {}

  /// A probe ended at `now`: `error` empty when the brokers answered, else why not.
  void probed(clock::time_point now, const std::string& error);
  /// When the next probe is due.
  [[nodiscard]] clock::time_point next_probe() const { return m_next; }
  [[nodiscard]] ReachVerdict verdict(clock::time_point now) const;
  [[nodiscard]] const ReachOptions& options() const { return m_opt; }

 private:
  ReachOptions m_opt;
  bool m_answered = false;                  // the last probe was answered
  std::optional<clock::time_point> m_lost;  // the first failed probe since the last answer
  std::string m_why;                        // the last failure
  clock::time_point m_next{};               // the next probe
};

/// The lease tick's intent under `v`; `busy`: the shards with rows in flight.
[[nodiscard]] LeaseIntent lease_intent(const ReachVerdict& v, std::set<int> busy);

}  // namespace txbox::relay
