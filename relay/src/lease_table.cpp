// Shard leases (see lease_table.hpp).
#include "lease_table.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <pqxx/pqxx>
#include <set>

#include "txbox/detail/pq.hpp"
#include "txbox/error.hpp"

namespace txbox::relay {

int fair_share(int live_relays, int shard_count) noexcept {
  const int live = std::max(live_relays, 1);
  return (std::max(shard_count, 0) + live - 1) / live;
}

Surplus surplus(const std::map<int, std::int64_t>& held, int target, const std::set<int>& busy,
                int unit) {
  Surplus out;
  unit = std::max(unit, 1);
  // The held groups, highest first, each with its shards and whether one is busy.
  std::map<int, std::vector<int>, std::greater<>> groups;
  for (const auto& [sh, ep] : held) groups[sh / unit].push_back(sh);
  std::vector<const std::vector<int>*> idle, in_flight;
  for (const auto& [g, shards] : groups) {
    const bool is_busy =
        std::any_of(shards.begin(), shards.end(), [&](int sh) { return busy.contains(sh); });
    (is_busy ? in_flight : idle).push_back(&shards);
  }
  auto left = static_cast<int>(held.size());
  for (const auto* shards : idle) {
    if (left <= target) break;
    out.give_back.insert(out.give_back.end(), shards->begin(), shards->end());
    left -= static_cast<int>(shards->size());
  }
  for (const auto* shards : in_flight) {
    if (left <= target) break;
    out.draining.insert(shards->begin(), shards->end());
    left -= static_cast<int>(shards->size());
  }
  return out;
}

LeaseView claimable(LeaseView view, const std::set<int>& in_flight) {
  for (const int shard : in_flight) view.epochs.erase(shard);
  for (const int shard : view.draining) view.epochs.erase(shard);
  return view;
}

LeaseTable::LeaseTable(detail::schema_name schema, std::string owner, std::chrono::milliseconds ttl,
                       int unit)
    : m_schema(std::move(schema)), m_owner(std::move(owner)), m_ttl(ttl), m_unit(unit) {}

namespace {

// The shards of `held` whose group of `unit` is not wholly held (a lane half lost).
std::vector<std::int64_t> partial_groups(const std::map<int, std::int64_t>& held, int unit) {
  std::map<int, int> count;
  for (const auto& [sh, ep] : held) ++count[sh / unit];
  std::vector<std::int64_t> out;
  for (const auto& [sh, ep] : held) {
    if (count[sh / unit] < unit) out.push_back(sh);
  }
  return out;
}

}  // namespace

void LeaseTable::forget() {
  m_view = {};
  m_next_tick = {};
  m_stamp.reset();  // a new primary may hold an older heartbeat of ours
}

namespace {

std::string namesake_error(const std::string& name, const std::string& seen) {
  return fmt::format(
      "another relay named '{}' is live (its heartbeat in outbox_relays moved to {} while this "
      "one waited to join): two relays with one name take each other's shards on every tick. "
      "Hint: give every relay its own name (relay.name, --name, TXBOX_RELAY_NAME); the default "
      "host:pid repeats when containers share a hostname and both run as PID 1",
      name, seen);
}

}  // namespace

bool LeaseTable::namesake_gone(pqxx::connection& db) {
  if (m_namesake_cleared) return true;
  const auto stamp = [&]() -> std::optional<std::string> {
    pqxx::nontransaction tx(db);
    const auto r = pq::exec(tx,
                            "SELECT seen_at::text FROM " + m_schema.table("outbox_relays") +
                                " WHERE name = $1 AND seen_at > now() - $2::interval",
                            m_owner, interval(m_ttl));
    if (r.empty()) return std::nullopt;
    return r[0][0].as<std::string>();
  }();
  if (!m_namesake) {
    if (!stamp) return m_namesake_cleared = true;
    // A live relay of this name renews its heartbeat every ttl/3; one that died (this relay's
    // previous run, killed) does not. Watched at the next ticks, not in a sleep: a stop
    // request is served meanwhile.
    spdlog::info(
        "leases: a relay named '{}' was seen at {}; waiting {} ms to see whether it still runs",
        m_owner, *stamp, (m_ttl / 2).count());
    m_namesake = NamesakeWatch{*stamp, clock::now() + m_ttl / 2};
    return false;
  }
  if (stamp && *stamp != m_namesake->first) throw config_error(namesake_error(m_owner, *stamp));
  if (clock::now() < m_namesake->until) return false;
  spdlog::info("leases: its heartbeat stopped (a previous run of this relay); joining");
  return m_namesake_cleared = true;
}

void LeaseTable::heartbeat(pqxx::work& tx) {
  const std::string relays = m_schema.table("outbox_relays");
  if (m_stamp) {
    // The heartbeat is ours since the last tick, or another relay of our name wrote it.
    const auto r = pq::exec(tx,
                            "SELECT seen_at::text FROM " + relays +
                                " WHERE name = $1 AND seen_at > now() - $2::interval "
                                "FOR UPDATE",
                            m_owner, interval(m_ttl));
    if (!r.empty() && r[0][0].as<std::string>() != *m_stamp) {
      m_view = {};  // the leases under our name are not ours alone: never given back by us
      throw config_error(namesake_error(m_owner, r[0][0].as<std::string>()));
    }
  }
  m_stamp.reset();  // until the tick commits
  m_written = pq::exec1(tx,
                        "INSERT INTO " + relays +
                            " (name, seen_at) VALUES ($1, now()) "
                            "ON CONFLICT (name) DO UPDATE SET seen_at = now() "
                            "RETURNING seen_at::text",
                        m_owner)[0]
                  .as<std::string>();
}

LeaseTick LeaseTable::tick(pqxx::connection& db, const LeaseIntent& intent) {
  if (!intent.publish) return stand_by(db, intent);
  if (!m_joined && !namesake_gone(db)) {
    m_next_tick =
        clock::now() + std::max<clock::duration>(m_ttl / 20, std::chrono::milliseconds(10));
    return {m_view, 0};
  }
  const auto sent = clock::now();
  const std::string relays = m_schema.table("outbox_relays");
  pqxx::work tx(db);
  heartbeat(tx);
  if (!m_joined) {
    // Start-up: be counted first, take shards one heartbeat round later. Relays started
    // together then all see each other, and the first does not grab all 64 shards only to
    // hand most of them back a round later.
    tx.commit();
    m_stamp = m_written;
    m_joined = true;
    m_next_tick = clock::now() + m_ttl / 3;
    spdlog::info("leases: joined; taking a fair share of the shards in {} ms", (m_ttl / 3).count());
    return {m_view, 0};
  }
  const int live =
      pq::exec1(tx, "SELECT count(*) FROM " + relays + " WHERE seen_at > now() - $1::interval",
                interval(m_ttl))[0]
          .as<int>();
  const int target = fair_share(live, detail::shard_count / m_unit) * m_unit;

  std::map<int, std::int64_t> kept = renew(tx, intent.busy);
  std::size_t changes = lost_from_view(kept);
  const auto hand_back = [&](const std::vector<std::int64_t>& shards) {
    give_back(tx, shards);
    for (auto sh : shards) kept.erase(static_cast<int>(sh));
    changes += shards.size();
  };
  if (m_unit > 1) hand_back(partial_groups(kept, m_unit));  // a lane is held whole or not at all

  // Give back what exceeds our fair share (those with rows in flight once they settled),
  // take free or expired shards up to it.
  std::set<int> draining;
  if (static_cast<int>(kept.size()) > target) {
    auto over = surplus(kept, target, intent.busy, m_unit);  // kept holds whole groups
    hand_back(over.give_back);
    draining = std::move(over.draining);
  } else if (static_cast<int>(kept.size()) < target && m_unit > 1) {
    changes += take_groups(tx, kept, target);
    hand_back(partial_groups(kept, m_unit));
  } else if (static_cast<int>(kept.size()) < target) {
    changes += take_shards(tx, kept, target);
  }
  tx.commit();
  m_stamp = m_written;
  if (changes > 0 || kept.size() != m_view.epochs.size() ||
      draining.size() != m_view.draining.size()) {
    spdlog::info("leases: {} of {} shards owned ({} live relay(s)){}", kept.size(),
                 detail::shard_count, live,
                 draining.empty()
                     ? std::string()
                     : fmt::format("; {} kept until their rows in flight settle", draining.size()));
  }
  done(std::move(kept), std::move(draining), sent);
  return {m_view, changes};
}

std::size_t LeaseTable::take_groups(pqxx::work& tx, std::map<int, std::int64_t>& kept, int target) {
  const std::string leases = m_schema.table("outbox_leases");
  // Whole groups whose every shard is free, expired or ours; ours first. A shard that
  // changed hands between the choice and the update leaves its group partial: given back.
  const std::string kept_shards = lease_arrays(LeaseView{kept, {}}).first;
  const auto r =
      pq::exec(tx,
               "UPDATE " + leases +
                   " x SET owner = $1, epoch = x.epoch + 1, expires_at = now() + $2::interval "
                   "WHERE (x.owner IS NULL OR x.expires_at <= now() OR x.owner = $1) "
                   "AND x.shard / $5 IN (SELECT shard / $5 FROM " +
                   leases +
                   " GROUP BY shard / $5 "
                   "HAVING bool_and(owner IS NULL OR expires_at <= now() OR owner = $1) "
                   "AND NOT bool_or(shard = ANY($4::int[])) "
                   "ORDER BY bool_or(owner IS NOT DISTINCT FROM $1) DESC, random() LIMIT $3) "
                   "RETURNING x.shard, x.epoch",
               m_owner, interval(m_ttl), (target - static_cast<int>(kept.size())) / m_unit,
               kept_shards, m_unit);
  for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
  return r.size();
}

std::size_t LeaseTable::take_shards(pqxx::work& tx, std::map<int, std::int64_t>& kept, int target) {
  const std::string leases = m_schema.table("outbox_leases");
  // Free or expired shards, and our own that we do not hold in the view: leases a forgotten
  // session of ours took (after a reconnect, a failover). Waiting for those to expire would
  // stall their shards for up to a lease TTL; the new epoch fences anything that session
  // had in flight. Our own first, so that they do not sit idle while we take others.
  const std::string kept_shards = lease_arrays(LeaseView{kept, {}}).first;
  const auto r =
      pq::exec(tx,
               "UPDATE " + leases +
                   " x SET owner = $1, epoch = x.epoch + 1, expires_at = now() + $2::interval "
                   "WHERE (x.owner IS NULL OR x.expires_at <= now() OR x.owner = $1) "
                   "AND x.shard IN (SELECT shard FROM " +
                   leases +
                   " WHERE (owner IS NULL OR expires_at <= now() OR owner = $1) "
                   "AND NOT shard = ANY($4::int[]) ORDER BY owner IS NOT DISTINCT FROM $1 DESC, "
                   "random() LIMIT $3 FOR UPDATE SKIP LOCKED) "
                   "RETURNING x.shard, x.epoch",
               m_owner, interval(m_ttl), target - static_cast<int>(kept.size()), kept_shards);
  for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
  return r.size();
}

// Kafka does not answer: renew what is held, take nothing, no heartbeat (the other relays
// stop counting this one after the ttl); with give_back, the shards not busy go to them.
LeaseTick LeaseTable::stand_by(pqxx::connection& db, const LeaseIntent& intent) {
  const auto sent = clock::now();
  if (m_view.empty()) {
    // No statement: ticks stay cheap, and the first one after Kafka answers comes soon.
    m_next_tick = sent + std::min<clock::duration>(m_ttl / 3, std::chrono::milliseconds(250));
    return {m_view, 0};
  }
  pqxx::work tx(db);
  auto kept = renew(tx, intent.busy);
  std::size_t changes = lost_from_view(kept);
  std::vector<std::int64_t> idle;
  if (intent.give_back) {
    // Whole groups without a busy shard (kept holds whole groups).
    std::set<int> busy_groups;
    for (const int sh : intent.busy) busy_groups.insert(sh / m_unit);
    for (const auto& [sh, ep] : kept) {
      if (!busy_groups.contains(sh / m_unit)) idle.push_back(sh);
    }
  }
  if (!idle.empty() && others_live(tx) > 0) {
    give_back(tx, idle);
    for (auto sh : idle) kept.erase(static_cast<int>(sh));
    changes += idle.size();
    spdlog::warn(
        "leases: Kafka does not answer; gave {} shard(s) back to the other relays ({} kept "
        "until their rows in flight are acknowledged)",
        idle.size(), kept.size());
  }
  tx.commit();
  std::set<int> draining;  // still held, still not to be claimed
  for (const int sh : m_view.draining) {
    if (kept.contains(sh)) draining.insert(sh);
  }
  done(std::move(kept), std::move(draining), sent);
  return {m_view, changes};
}

std::map<int, std::int64_t> LeaseTable::renew(pqxx::work& tx, const std::set<int>& busy) {
  // By shard and epoch: a lease taken over meanwhile is not renewed.
  std::map<int, std::int64_t> kept;
  keep_busy(tx, busy, kept);
  if (m_view.empty()) return kept;
  // (Shards of the view are renewed by epoch below, never by keep_busy.)
  const auto [shards, epochs] = lease_arrays(m_view);
  const auto r = pq::exec(tx,
                          "UPDATE " + m_schema.table("outbox_leases") +
                              " x SET expires_at = now() + $2::interval "
                              "FROM unnest($3::int[], $4::bigint[]) AS l(shard, epoch) "
                              "WHERE x.shard = l.shard AND x.epoch = l.epoch AND "
                              "x.owner = $1 AND x.expires_at > now() "
                              "RETURNING x.shard, x.epoch",
                          m_owner, interval(m_ttl), shards, epochs);
  for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
  if (const auto lost = lost_from_view(kept); lost > 0) {
    spdlog::warn("leases: lost {} shard(s) to other relays", lost);
  }
  return kept;
}

std::size_t LeaseTable::lost_from_view(const std::map<int, std::int64_t>& kept) const {
  return static_cast<std::size_t>(
      std::count_if(m_view.epochs.begin(), m_view.epochs.end(),
                    [&](const auto& held) { return !kept.contains(held.first); }));
}

void LeaseTable::keep_busy(pqxx::work& tx, const std::set<int>& busy,
                           std::map<int, std::int64_t>& kept) {
  // Shards with rows in flight that the view no longer holds (it was forgotten with a lost
  // connection) while their leases are still ours: renewed at their epoch, so that no other
  // relay takes them and re-sends rows still waiting for their acknowledgements.
  std::vector<std::int64_t> missing;
  for (const int sh : busy) {
    if (!m_view.epochs.contains(sh)) missing.push_back(sh);
  }
  if (missing.empty()) return;
  const auto r = pq::exec(tx,
                          "UPDATE " + m_schema.table("outbox_leases") +
                              " SET expires_at = now() + $2::interval "
                              "WHERE owner = $1 AND expires_at > now() "
                              "AND shard = ANY($3::int[]) RETURNING shard, epoch",
                          m_owner, interval(m_ttl), int_array(missing));
  for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
}

int LeaseTable::others_live(pqxx::work& tx) {
  return pq::exec1(tx,
                   "SELECT count(*) FROM " + m_schema.table("outbox_relays") +
                       " WHERE seen_at > now() - $1::interval AND name <> $2",
                   interval(m_ttl), m_owner)[0]
      .as<int>();
}

void LeaseTable::give_back(pqxx::work& tx, const std::vector<std::int64_t>& shards) {
  if (shards.empty()) return;
  pq::exec(tx,
           "UPDATE " + m_schema.table("outbox_leases") +
               " SET owner = NULL, expires_at = '-infinity' "
               "WHERE owner = $1 AND shard = ANY($2::int[])",
           m_owner, int_array(shards));
}

void LeaseTable::done(std::map<int, std::int64_t> kept, std::set<int> draining,
                      clock::time_point sent) {
  m_view.epochs = std::move(kept);
  m_view.draining = std::move(draining);
  // Our view of the leases is safe until a fifth of the ttl before they expire.
  m_view.valid_until = sent + m_ttl - m_ttl / 5;
  m_next_tick = clock::now() + m_ttl / 3;
}

void LeaseTable::release(pqxx::connection& db) noexcept {
  if (m_view.empty()) return;
  try {
    pqxx::work tx(db);
    pq::exec(tx,
             "UPDATE " + m_schema.table("outbox_leases") +
                 " SET owner = NULL, expires_at = '-infinity' "
                 "WHERE owner = $1 AND shard = ANY($2::int[])",
             m_owner, lease_arrays(m_view).first);
    pq::exec(tx, "DELETE FROM " + m_schema.table("outbox_relays") + " WHERE name = $1", m_owner);
    tx.commit();
    spdlog::info("leases: released {} shard(s)", m_view.epochs.size());
    m_view = {};
  } catch (const std::exception& e) {
    spdlog::warn("leases: could not release ({}); they expire by themselves", e.what());
  }
}

}  // namespace txbox::relay
