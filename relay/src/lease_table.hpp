// Shard leases: heartbeat, renew, take and give back shards up to a fair share. All lease SQL
// lives here; the loop acts only on the LeaseView a tick returns. Internal to the relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <pqxx/connection>
#include <pqxx/transaction>
#include <set>
#include <string>
#include <vector>

#include "round.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::relay {

/// ceil(shard_count / live_relays): the most shards one relay holds (live_relays < 1 counts
/// as 1).
[[nodiscard]] int fair_share(int live_relays, int shard_count) noexcept;

/// What a tick does with the shards held beyond the fair share.
struct Surplus {
  std::vector<std::int64_t> give_back;  ///< no rows in flight: given back now
  std::set<int> draining;               ///< rows in flight: kept until they settle (LeaseView)
};

/// Which of the `held` shards go when more than `target` are held: whole groups of `unit`,
/// the highest groups without a `busy` shard (rows in flight) first. A busy group is never
/// given back: another relay would re-send its rows still waiting for acknowledgements, and
/// those old copies could land after the newer messages of their keys. The busy groups
/// still beyond the target are draining: kept (renewed) but not claimed, and given back by
/// a later tick once their rows have settled.
[[nodiscard]] Surplus surplus(const std::map<int, std::int64_t>& held, int target,
                              const std::set<int>& busy, int unit = 1);

/// The shards of `view` a claim may take: those with no row in flight (`in_flight`: a claim
/// takes a shard's head, which must not overtake a row still in flight) and not draining.
[[nodiscard]] LeaseView claimable(LeaseView view, const std::set<int>& in_flight);

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

  /// Heartbeat; renews the held leases (by epoch), gives back what exceeds the fair share
  /// (shards with rows in flight, `intent.busy`, only once they have settled: surplus) and
  /// takes free or expired shards up to it. The first tick only registers the heartbeat.
  /// Under an intent that does not publish (Kafka unreachable): no heartbeat, nothing taken,
  /// the held leases renewed, and with give_back those not busy given back when another
  /// relay is live; nothing held: no statement at all.
  /// Throws config_error when another relay of the same name is live: at the first tick
  /// (when the name's heartbeat is recent, the ticks of the next ttl/2 take nothing and watch
  /// it, to tell a live relay from this one's previous run), or later when that relay's heartbeat
  /// overwrote this one's.
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
  // Before joining: true when no other relay of this name is live. When its heartbeat is
  // recent, false (look again at the next tick) until ttl/2 passed without it moving; throws
  // config_error when it moves.
  bool namesake_gone(pqxx::connection& db);
  // Writes the heartbeat; throws config_error when another relay of this name wrote it
  // since this one's last tick.
  void heartbeat(pqxx::work& tx);
  // The held leases still ours, and those of `busy` shards still ours (keep_busy).
  std::map<int, std::int64_t> renew(pqxx::work& tx, const std::set<int>& busy);
  void keep_busy(pqxx::work& tx, const std::set<int>& busy, std::map<int, std::int64_t>& kept);
  [[nodiscard]] std::size_t lost_from_view(const std::map<int, std::int64_t>& kept) const;
  int others_live(pqxx::work& tx);  // relays other than this one with a fresh heartbeat
  // Below the fair share `target`: takes free or expired shards (whole groups of m_unit with
  // take_groups) into `kept`; returns how many were taken.
  std::size_t take_groups(pqxx::work& tx, std::map<int, std::int64_t>& kept, int target);
  std::size_t take_shards(pqxx::work& tx, std::map<int, std::int64_t>& kept, int target);
  void give_back(pqxx::work& tx, const std::vector<std::int64_t>& shards);
  void done(std::map<int, std::int64_t> kept, std::set<int> draining, clock::time_point sent);

  detail::schema_name m_schema;
  std::string m_owner;
  std::chrono::milliseconds m_ttl;
  int m_unit;
  LeaseView m_view;
  clock::time_point m_next_tick{};
  bool m_joined = false;
  struct NamesakeWatch {
    std::string first;  // the namesake's heartbeat when first seen
    clock::time_point until;
  };
  std::optional<NamesakeWatch> m_namesake;
  bool m_namesake_cleared = false;
  std::optional<std::string> m_stamp;  // our heartbeat's seen_at as committed; none: unknown
  std::string m_written;               // the seen_at the current tick wrote
};

}  // namespace txbox::relay
