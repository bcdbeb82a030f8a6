// Shard leases: heartbeat, renew, take and give back shards up to a fair share. All lease SQL
// lives here; the loop acts only on the LeaseView a tick returns. Internal to the relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <pqxx/connection>
#include <pqxx/transaction>
#include <string>
#include <vector>

#include "round.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::relay {

/// ceil(shard_count / live_relays): the most shards one relay holds (live_relays < 1 counts
/// as 1).
[[nodiscard]] int fair_share(int live_relays, int shard_count) noexcept;

/// What a lease tick changed.
struct LeaseTick {
  LeaseView view;
  std::size_t changes = 0;  ///< shards taken, lost or given back
};

class LeaseTable {
 public:
  /// `unit`: shards are taken and given back in aligned groups of this many (1: one by one;
  /// k_lane_shards: whole lanes, for exactly_once), and the fair share counts groups.
  LeaseTable(detail::schema_name schema, std::string owner, std::chrono::milliseconds ttl,
             int unit = 1);

  /// Heartbeat; renews the held leases (by epoch), gives back what exceeds the fair share and
  /// takes free or expired shards up to it. The first tick only registers the heartbeat.
  /// Under an intent that does not publish (Kafka unreachable): no heartbeat, nothing taken,
  /// the held leases renewed, and with give_back those not busy given back when another
  /// relay is live; nothing held: no statement at all.
  LeaseTick tick(pqxx::connection& db, const LeaseIntent& intent = {});

  /// Gives every held shard back at once and removes the heartbeat. Never throws.
  void release(pqxx::connection& db) noexcept;

  /// True when a tick is due (time, or expedited).
  [[nodiscard]] bool due(clock::time_point now) const { return now >= m_next_tick; }
  /// Ticks at the next chance (a shard was taken over, or the leases ran short).
  void expedite() { m_next_tick = clock::time_point{}; }
  [[nodiscard]] clock::time_point next_tick() const { return m_next_tick; }
  /// Forgets the held leases (the connection was lost: they are renewed by epoch only).
  void forget();
  [[nodiscard]] const LeaseView& view() const { return m_view; }

 private:
  LeaseTick stand_by(pqxx::connection& db, const LeaseIntent& intent);
  std::map<int, std::int64_t> renew(pqxx::work& tx);  // the held leases still ours
  int others_live(pqxx::work& tx);  // relays other than this one with a fresh heartbeat
  void give_back(pqxx::work& tx, const std::vector<std::int64_t>& shards);
  void done(std::map<int, std::int64_t> kept, clock::time_point sent);

  detail::schema_name m_schema;
  std::string m_owner;
  std::chrono::milliseconds m_ttl;
  int m_unit;
  LeaseView m_view;
  clock::time_point m_next_tick{};
  bool m_joined = false;
};

}  // namespace txbox::relay
