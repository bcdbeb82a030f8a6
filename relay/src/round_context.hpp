// What both delivery modes share: references to the relay's units (its config, the database
// session, the leases, the outbox store, the durability and standby gates, the Kafka probe,
// health, the random source of the backoff) and the steps of a round that do not depend on
// the mode: lease time for a round, the standby check, waiting for work, settling. Owns
// nothing: Relay::impl owns the units. Internal to the relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/connection>
#include <random>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "durability_gate.hpp"
#include "health.hpp"
#include "kafka_probe.hpp"
#include "lease_table.hpp"
#include "outbox_store.hpp"
#include "outcome.hpp"
#include "round.hpp"
#include "session.hpp"
#include "standby_gate.hpp"
#include "txbox/relay.hpp"

namespace txbox::relay {

/// A message is handed to Kafka only while the leases hold for this much longer: time for
/// its acknowledgement and the fenced delete before another relay may take the shard.
[[nodiscard]] std::chrono::milliseconds delivery_budget(const RelayConfig& c);
/// The admin requests for a claimed round: the round's leases wait on them.
[[nodiscard]] std::chrono::milliseconds admin_timeout(const RelayConfig& c);

struct RoundContext {
  const RelayConfig& cfg;
  std::unique_ptr<Session>& session_slot;  ///< Relay::impl's; empty while disconnected
  LeaseTable& leases;
  OutboxStore& store;
  DurabilityGate& gate;
  StandbyGate& standbys;
  KafkaProbe& kafka;
  Health& health;
  std::mt19937_64& rng;

  [[nodiscard]] Session& session() const { return *session_slot; }
  [[nodiscard]] pqxx::connection& db() const { return session_slot->db(); }
  [[nodiscard]] bool connected() const { return session_slot && session_slot->is_open(); }

  /// The leases cover a round's delivery budget from now.
  [[nodiscard]] bool lease_time_for_round() const;
  /// A round may be claimed now: Kafka answers and the leases cover a round.
  [[nodiscard]] bool round_possible() const;
  /// True when round_possible(); else waits min(poll_interval, lease_ttl / 3) (or until
  /// `stop`) and returns false.
  bool round_possible_or_pause(const std::stop_token& stop) const;
  /// Nothing to claim: waits for signs of new rows, poll_interval, or the next lease tick.
  void idle(const std::stop_token& stop);

  /// The phantom guard: true when relay.wait_for_standbys standbys flushed the round's WAL
  /// (up to 1 s, never into the delivery budget). Else the rows stay in the outbox,
  /// untouched; the next pass waits for the same point (`rows` keeps the held round's rows:
  /// standby_round.hpp).
  bool standbys_have(std::vector<Row>& rows, const std::stop_token& stop);
  /// Before a round goes out: checks its topics not checked yet (or due again).
  void check_durability(const std::vector<Row>& rows);

  /// A round's gates under `view`: its topics held by strict durability (and why), and the
  /// leases: rows are handed over only while they cover the delivery budget (a relay that
  /// stalled since the claim may have lost the shard), a transaction commits only while they
  /// cover a third of it (after that the lane's next owner may have fenced the producer).
  [[nodiscard]] RoundGates round_gates(const LeaseView& view, const std::vector<Row>& rows) const;
  /// No acknowledgement for lease_ttl: says so, and which partitions lack in-sync replicas.
  void on_slow(const std::set<std::string>& topics);
  /// `rows` claimed rows were not sent: the leases ran short; ticks them at once.
  void lease_short(std::size_t rows);

  /// Deletes the acknowledged rows, moves the refused ones to outbox_dead and schedules the
  /// retries, fenced by `view` (the epochs the rows were claimed at). `fenced_fate`: what
  /// becomes of acknowledged rows a shard's new owner took over (the mode's words).
  void settle(const std::vector<Row>& rows, const std::vector<Outcome>& outcomes,
              const LeaseView& view, std::string_view fenced_fate);
};

}  // namespace txbox::relay
