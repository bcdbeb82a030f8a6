// Shard leases (see lease_table.hpp).
#include "lease_table.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <set>

namespace txbox::relay {

int fair_share(int live_relays, int shard_count) noexcept {
  const int live = std::max(live_relays, 1);
  return (std::max(shard_count, 0) + live - 1) / live;
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
}

LeaseTick LeaseTable::tick(pqxx::connection& db, const LeaseIntent& intent) {
  if (!intent.publish) return stand_by(db, intent);
  const auto sent = clock::now();
  const std::string relays = m_schema.table("outbox_relays");
  const std::string leases = m_schema.table("outbox_leases");
  pqxx::work tx(db);
  tx.exec_params("INSERT INTO " + relays +
                     " (name, seen_at) VALUES ($1, now()) "
                     "ON CONFLICT (name) DO UPDATE SET seen_at = now()",
                 m_owner);
  if (!m_joined) {
    // Start-up: be counted first, take shards one heartbeat round later. Relays started
    // together then all see each other, and the first does not grab all 64 shards only to
    // hand most of them back a round later.
    tx.commit();
    m_joined = true;
    m_next_tick = clock::now() + m_ttl / 3;
    spdlog::info("leases: joined; taking a fair share of the shards in {} ms", (m_ttl / 3).count());
    return {m_view, 0};
  }
  const int live =
      tx.exec_params1("SELECT count(*) FROM " + relays + " WHERE seen_at > now() - $1::interval",
                      interval(m_ttl))[0]
          .as<int>();
  const int target = fair_share(live, detail::shard_count / m_unit) * m_unit;

  std::map<int, std::int64_t> kept = renew(tx);
  std::size_t changes = m_view.epochs.size() - kept.size();
  const auto hand_back = [&](const std::vector<std::int64_t>& shards) {
    give_back(tx, shards);
    for (auto sh : shards) kept.erase(static_cast<int>(sh));
    changes += shards.size();
  };
  if (m_unit > 1) hand_back(partial_groups(kept, m_unit));  // a lane is held whole or not at all

  // Give back what exceeds our fair share, take free or expired shards up to it.
  if (static_cast<int>(kept.size()) > target) {
    // The highest shards go (whole groups: kept holds whole groups, target counts them).
    std::vector<std::int64_t> extra;
    for (auto it = kept.rbegin();
         it != kept.rend() && static_cast<int>(kept.size() - extra.size()) > target; ++it) {
      extra.push_back(it->first);
    }
    hand_back(extra);
  } else if (static_cast<int>(kept.size()) < target && m_unit > 1) {
    // Whole groups whose every shard is free, expired or ours; ours first. A shard that
    // changed hands between the choice and the update leaves its group partial: given back.
    const std::string kept_shards = lease_arrays(LeaseView{kept, {}}).first;
    const auto r = tx.exec_params(
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
        m_owner, interval(m_ttl), (target - static_cast<int>(kept.size())) / m_unit, kept_shards,
        m_unit);
    for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
    changes += r.size();
    hand_back(partial_groups(kept, m_unit));
  } else if (static_cast<int>(kept.size()) < target) {
    // Free or expired shards, and our own that we do not hold in the view: leases a forgotten
    // session of ours took (after a reconnect, a failover). Waiting for those to expire would
    // stall their shards for up to a lease TTL; the new epoch fences anything that session
    // had in flight. Our own first, so that they do not sit idle while we take others.
    const std::string kept_shards = lease_arrays(LeaseView{kept, {}}).first;
    const auto r = tx.exec_params(
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
    changes += r.size();
  }
  tx.commit();
  if (changes > 0 || kept.size() != m_view.epochs.size()) {
    spdlog::info("leases: {} of {} shards owned ({} live relay(s))", kept.size(),
                 detail::shard_count, live);
  }
  done(std::move(kept), sent);
  return {m_view, changes};
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
  auto kept = renew(tx);
  std::size_t changes = m_view.epochs.size() - kept.size();
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
  done(std::move(kept), sent);
  return {m_view, changes};
}

std::map<int, std::int64_t> LeaseTable::renew(pqxx::work& tx) {
  // By shard and epoch: a lease taken over meanwhile is not renewed.
  std::map<int, std::int64_t> kept;
  if (m_view.empty()) return kept;
  const auto [shards, epochs] = lease_arrays(m_view);
  const auto r = tx.exec_params("UPDATE " + m_schema.table("outbox_leases") +
                                    " x SET expires_at = now() + $2::interval "
                                    "FROM unnest($3::int[], $4::bigint[]) AS l(shard, epoch) "
                                    "WHERE x.shard = l.shard AND x.epoch = l.epoch AND "
                                    "x.owner = $1 AND x.expires_at > now() "
                                    "RETURNING x.shard, x.epoch",
                                m_owner, interval(m_ttl), shards, epochs);
  for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
  if (kept.size() < m_view.epochs.size()) {
    spdlog::warn("leases: lost {} shard(s) to other relays", m_view.epochs.size() - kept.size());
  }
  return kept;
}

int LeaseTable::others_live(pqxx::work& tx) {
  return tx
      .exec_params1("SELECT count(*) FROM " + m_schema.table("outbox_relays") +
                        " WHERE seen_at > now() - $1::interval AND name <> $2",
                    interval(m_ttl), m_owner)[0]
      .as<int>();
}

void LeaseTable::give_back(pqxx::work& tx, const std::vector<std::int64_t>& shards) {
  if (shards.empty()) return;
  tx.exec_params("UPDATE " + m_schema.table("outbox_leases") +
                     " SET owner = NULL, expires_at = '-infinity' "
                     "WHERE owner = $1 AND shard = ANY($2::int[])",
                 m_owner, int_array(shards));
}

void LeaseTable::done(std::map<int, std::int64_t> kept, clock::time_point sent) {
  m_view.epochs = std::move(kept);
  // Our view of the leases is safe until a fifth of the ttl before they expire.
  m_view.valid_until = sent + m_ttl - m_ttl / 5;
  m_next_tick = clock::now() + m_ttl / 3;
}

void LeaseTable::release(pqxx::connection& db) noexcept {
  if (m_view.empty()) return;
  try {
    pqxx::work tx(db);
    tx.exec_params("UPDATE " + m_schema.table("outbox_leases") +
                       " SET owner = NULL, expires_at = '-infinity' "
                       "WHERE owner = $1 AND shard = ANY($2::int[])",
                   m_owner, lease_arrays(m_view).first);
    tx.exec_params("DELETE FROM " + m_schema.table("outbox_relays") + " WHERE name = $1", m_owner);
    tx.commit();
    spdlog::info("leases: released {} shard(s)", m_view.epochs.size());
    m_view = {};
  } catch (const std::exception& e) {
    spdlog::warn("leases: could not release ({}); they expire by themselves", e.what());
  }
}

}  // namespace txbox::relay
