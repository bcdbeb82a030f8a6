// txboxctl status and txboxctl schema check.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "output.hpp"
#include "replication.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::ctl {
namespace {

using json = nlohmann::json;
using snapshot = pq::read_only_snapshot;

// Pending rows are counted exactly up to this many (as the relay's backlog gauge), then
// estimated from PostgreSQL's statistics; above it each shard counts its first
// k_shard_sample rows only. So status reads a bounded number of rows however large the backlog.
constexpr std::int64_t k_exact_up_to = 100'000;
constexpr std::int64_t k_shard_sample = 1'000;

struct ShardBacklog {
  int shard = 0;
  std::int64_t pending = 0;   // exact, or the rows counted (k_shard_sample)
  std::int64_t retrying = 0;  // among those counted
  double oldest_age = 0;      // seconds, of the shard's head (its lowest id)
  bool exact = true;
};

struct Backlog {
  std::vector<ShardBacklog> shards;  // shards with pending rows, in order
  std::int64_t total = 0;
  std::int64_t retrying = 0;
  double oldest = std::nan("");
  bool exact = true;
};

// The backlog in two short statements of their own (no snapshot held across them): a bounded
// count with the planner's estimate, then each shard's head and capped count through the
// (shard, id) index of pending rows.
Backlog read_backlog(pqxx::transaction_base& tx, const std::string& s) {
  const auto head = pq::exec1(
      tx,
      "SELECT (SELECT count(*) FROM (SELECT 1 FROM " + s +
          ".outbox WHERE published_at IS NULL LIMIT $1) c), "
          "(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($2))",
      k_exact_up_to + 1, s + ".outbox");
  const auto counted = head[0].as<std::int64_t>();
  Backlog b;
  b.exact = counted <= k_exact_up_to;
  const std::int64_t cap = b.exact ? k_exact_up_to + 1 : k_shard_sample;
  const std::string pending = "FROM " + s +
                              ".outbox o WHERE o.shard = g.shard::smallint AND "
                              "o.published_at IS NULL ORDER BY o.id";
  const auto rows = pq::exec(
      tx,
      "SELECT g.shard, c.n, c.r, extract(epoch FROM now() - h.created_at)::float8 "
      "FROM generate_series(0, $2::int - 1) AS g(shard) "
      "CROSS JOIN LATERAL (SELECT o.created_at " +
          pending +
          " LIMIT 1) h "
          "CROSS JOIN LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE x.attempts > 0) AS r "
          "FROM (SELECT o.attempts " +
          pending + " LIMIT $1) x) c ORDER BY g.shard",
      cap, detail::shard_count);
  std::int64_t sum = 0;
  for (const auto& row : rows) {
    ShardBacklog sb;
    sb.shard = row[0].as<int>();
    sb.pending = row[1].as<std::int64_t>();
    sb.retrying = row[2].as<std::int64_t>();
    sb.oldest_age = row[3].as<double>();
    sb.exact = sb.pending < cap;
    sum += sb.pending;
    b.retrying += sb.retrying;
    if (std::isnan(b.oldest) || sb.oldest_age > b.oldest) b.oldest = sb.oldest_age;
    b.shards.push_back(sb);
  }
  b.total = b.exact ? sum : std::max({sum, counted, head[1].as<std::int64_t>(0)});
  return b;
}

}  // namespace

int cmd_status(const Options& o, const StatusOptions& so) {
  Database db = connect(o);
  // Autocommit: each statement reads its own snapshot and none is held across them (a long
  // snapshot holds back vacuum of the delete-heavy outbox).
  pqxx::nontransaction tx(*db.conn);
  const SchemaState state = read_schema_state(tx, db.schema);
  require_version(state, db.schema, k_relays_version, "txboxctl status");
  const std::string& s = db.s;

  // ---- leases: one row per shard ----
  struct Lease {
    std::string owner;  // empty: never owned or released
    double expires_in = 0;
  };
  std::map<int, Lease> leases;
  for (const auto& row :
       tx.exec("SELECT shard, owner, CASE WHEN isfinite(expires_at) THEN extract(epoch FROM "
               "expires_at - now())::float8 END FROM " +
               s + ".outbox_leases ORDER BY shard")) {
    Lease l;
    if (!row[1].is_null()) l.owner = row[1].as<std::string>();
    l.expires_in = row[2].is_null() ? -1 : row[2].as<double>();
    leases[row[0].as<int>()] = l;
  }
  auto holder = [&](int shard) -> std::string {
    const auto it = leases.find(shard);
    if (it == leases.end() || it->second.owner.empty()) return "";
    return it->second.expires_in > 0 ? it->second.owner : it->second.owner + " (expired)";
  };

  // ---- backlog per shard ----
  const Backlog backlog = read_backlog(tx, s);
  json j_shards = json::array();
  Table t_backlog({"shard", "pending", "retrying", "oldest", "lease owner"},
                  {true, true, true, true, false});
  for (const ShardBacklog& sb : backlog.shards) {
    const std::string owner = holder(sb.shard);
    j_shards.push_back({{"shard", sb.shard},
                        {"pending", sb.pending},
                        {"pending_exact", sb.exact},
                        {"retrying", sb.retrying},
                        {"oldest_age_s", sb.oldest_age},
                        {"owner", owner.empty() ? json(nullptr) : json(leases[sb.shard].owner)}});
    t_backlog.add({std::to_string(sb.shard), std::to_string(sb.pending) + (sb.exact ? "" : "+"),
                   std::to_string(sb.retrying), duration(sb.oldest_age),
                   owner.empty() ? "-" : owner});
  }
  const std::int64_t total = backlog.total, retrying = backlog.retrying;
  const double oldest = backlog.oldest;

  // ---- leases grouped by owner ----
  struct Group {
    std::vector<int> shards;
    double min_in = 0, max_in = 0;
  };
  std::map<std::pair<std::string, bool>, Group> groups;  // (owner, expired)
  std::vector<int> unowned;
  for (const auto& [shard, l] : leases) {
    if (l.owner.empty()) {
      unowned.push_back(shard);
      continue;
    }
    Group& g = groups[{l.owner, l.expires_in <= 0}];
    if (g.shards.empty()) {
      g.min_in = g.max_in = l.expires_in;
    } else {
      g.min_in = std::min(g.min_in, l.expires_in);
      g.max_in = std::max(g.max_in, l.expires_in);
    }
    g.shards.push_back(shard);
  }
  json j_leases = json::array();
  Table t_leases({"owner", "state", "shards", "expires in", "shard list"},
                 {false, false, true, false, false});
  std::size_t held = 0;
  for (const auto& [key, g] : groups) {
    const auto& [owner, expired] = key;
    if (!expired) held += g.shards.size();
    j_leases.push_back({{"owner", owner},
                        {"state", expired ? "expired" : "held"},
                        {"shards", g.shards},
                        {"expires_in_s_min", g.min_in},
                        {"expires_in_s_max", g.max_in}});
    const std::string expiry =
        expired ? duration(-g.max_in) + " ago"
                : (g.min_in == g.max_in ? duration(g.min_in)
                                        : duration(g.min_in) + " - " + duration(g.max_in));
    t_leases.add({owner, expired ? "expired" : "held", std::to_string(g.shards.size()), expiry,
                  ranges(g.shards)});
  }

  // ---- relays ----
  json j_relays = json::array();
  Table t_relays({"relay", "last seen", "live"}, {false, true, false});
  std::size_t live = 0;
  for (const auto& row :
       pq::exec(tx,
                "SELECT name, " + sql_ts("seen_at") +
                    ", extract(epoch FROM now() - seen_at)::float8, "
                    "seen_at > now() - make_interval(secs => $1::float8 / 1000) FROM " +
                    s + ".outbox_relays ORDER BY name",
                so.lease_ttl_ms)) {
    const bool is_live = row[3].as<bool>();
    live += is_live;
    j_relays.push_back({{"name", row[0].as<std::string>()},
                        {"seen_at", row[1].as<std::string>()},
                        {"seen_age_s", row[2].as<double>()},
                        {"live", is_live}});
    t_relays.add(
        {row[0].as<std::string>(), duration(row[2].as<double>()) + " ago", is_live ? "yes" : "no"});
  }

  // ---- dead letters ----
  json j_outbox_dead = json::array();
  Table t_outbox_dead({"topic", "dead", "last failed"}, {false, true, false});
  std::int64_t outbox_dead = 0;
  for (const auto& row : tx.exec("SELECT topic, count(*), " + sql_ts("max(failed_at)") + " FROM " +
                                 s + ".outbox_dead GROUP BY topic ORDER BY topic")) {
    const auto n = row[1].as<std::int64_t>();
    outbox_dead += n;
    j_outbox_dead.push_back({{"topic", row[0].as<std::string>()},
                             {"count", n},
                             {"last_failed_at", row[2].as<std::string>()}});
    t_outbox_dead.add({row[0].as<std::string>(), std::to_string(n), row[2].as<std::string>()});
  }
  const bool has_requeue = state.has(k_inbox_requeue_version);
  json j_inbox_dead = json::array();
  Table t_inbox_dead({"consumer", "dead", "requeued", "last failed"}, {false, true, true, false});
  std::int64_t inbox_dead = 0;
  for (const auto& row :
       tx.exec("SELECT consumer, count(*), " +
               std::string(has_requeue ? "count(*) FILTER (WHERE requeued_at IS NOT NULL)" : "0") +
               ", " + sql_ts("max(failed_at)") + " FROM " + s +
               ".inbox_dead GROUP BY consumer ORDER BY consumer")) {
    const auto n = row[1].as<std::int64_t>();
    inbox_dead += n;
    j_inbox_dead.push_back({{"consumer", row[0].as<std::string>()},
                            {"count", n},
                            {"requeued", row[2].as<std::int64_t>()},
                            {"last_failed_at", row[3].as<std::string>()}});
    t_inbox_dead.add({row[0].as<std::string>(), std::to_string(n), row[2].as<std::string>(),
                      row[3].as<std::string>()});
  }

  // ---- inbox offsets ----
  json j_offsets = json::array();
  Table t_offsets({"consumer", "topic", "partition", "next offset", "updated"},
                  {false, false, true, true, true});
  for (const auto& row :
       tx.exec("SELECT consumer, topic, \"partition\", next_offset, " + sql_ts("updated_at") +
               ", extract(epoch FROM now() - updated_at)::float8 FROM " + s +
               ".inbox_offsets ORDER BY consumer, topic, \"partition\"")) {
    j_offsets.push_back({{"consumer", row[0].as<std::string>()},
                         {"topic", row[1].as<std::string>()},
                         {"partition", row[2].as<int>()},
                         {"next_offset", row[3].as<std::int64_t>()},
                         {"updated_at", row[4].as<std::string>()},
                         {"updated_age_s", row[5].as<double>()}});
    t_offsets.add({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[3].as<std::string>(), duration(row[5].as<double>()) + " ago"});
  }
  const std::string now = pq::exec1(tx, "SELECT " + sql_ts("now()"))[0].as<std::string>();
  const Replication replication = read_replication(tx);
  tx.commit();

  if (o.json) {
    print_json(
        {{"schema", db.schema},
         {"schema_version", state.version},
         {"at", now},
         {"outbox",
          {{"pending", total},
           {"pending_exact", backlog.exact},
           {"exact_up_to", k_exact_up_to},
           {"retrying", retrying},
           {"oldest_pending_age_s", std::isnan(oldest) ? json(nullptr) : json(oldest)},
           {"shards", j_shards}}},
         {"leases", {{"held_shards", held}, {"unowned_shards", unowned}, {"owners", j_leases}}},
         {"relays", {{"live", live}, {"lease_ttl_ms", so.lease_ttl_ms}, {"rows", j_relays}}},
         {"dead",
          {{"outbox", outbox_dead},
           {"outbox_by_topic", j_outbox_dead},
           {"inbox", inbox_dead},
           {"inbox_by_consumer", j_inbox_dead}}},
         {"inbox_offsets", j_offsets},
         {"server", to_json(replication)}});
    return k_exit_ok;
  }

  std::cout << fmt::format("txbox status: database {}, schema {} (version {}), at {}\n\n",
                           db.dbname, db.schema, state.version, now);
  std::cout << describe(replication) << "\n\n";
  if (total == 0) {
    std::cout << "Outbox backlog: empty\n";
  } else if (backlog.exact) {
    std::cout << fmt::format("Outbox backlog: {} pending in {} shard(s), {} retrying, oldest {}\n",
                             total, backlog.shards.size(), retrying, duration(oldest));
    t_backlog.print(std::cout);
  } else {
    std::cout << fmt::format(
        "Outbox backlog: about {} pending (estimated) in {} shard(s), oldest {}\n"
        "  (rows are counted up to {}, above that PostgreSQL's statistics are shown; per shard "
        "the first {} are counted, \"+\": more; {} of them retrying)\n",
        total, backlog.shards.size(), duration(oldest), k_exact_up_to, k_shard_sample, retrying);
    t_backlog.print(std::cout);
  }
  std::cout << fmt::format("\nLeases: {} of {} shards held", held, leases.size());
  if (!unowned.empty()) std::cout << fmt::format("; free: {}", ranges(unowned));
  std::cout << '\n';
  if (!t_leases.empty()) t_leases.print(std::cout);
  std::cout << fmt::format("\nRelays: {} live (seen within {})\n", live,
                           duration(static_cast<double>(so.lease_ttl_ms) / 1000.0));
  if (!t_relays.empty()) t_relays.print(std::cout);
  std::cout << fmt::format("\nDead letters: outbox {}, inbox {}\n", outbox_dead, inbox_dead);
  if (!t_outbox_dead.empty()) t_outbox_dead.print(std::cout);
  if (!t_inbox_dead.empty()) t_inbox_dead.print(std::cout);
  std::cout << "\nInbox offsets:";
  if (t_offsets.empty()) {
    std::cout << " none stored\n";
  } else {
    std::cout << '\n';
    t_offsets.print(std::cout);
  }
  return k_exit_ok;
}

int cmd_schema_check(const Options& o, int require) {
  Database db = connect(o);
  SchemaState state;
  {
    snapshot tx(*db.conn);
    state = read_schema_state(tx, db.schema);
    tx.commit();
  }
  const auto missing = missing_migrations(state, require);
  const auto missing_latest = missing_migrations(state, k_latest_version);
  const bool up_to_date = state.has_version_table && missing.empty();

  if (o.json) {
    json j_applied = json::array();
    for (std::size_t i = 0; i < state.applied.size(); ++i) {
      j_applied.push_back({{"version", state.applied[i]}, {"applied_at", state.applied_at[i]}});
    }
    json j_missing = json::array();
    for (const Migration* m : missing_latest) {
      j_missing.push_back({{"version", m->version},
                           {"file", fmt::format("migrations/{}", m->file)},
                           {"required", m->version <= require}});
    }
    print_json({{"schema", db.schema},
                {"schema_exists", state.schema_exists},
                {"version", state.version},
                {"applied", j_applied},
                {"latest", k_latest_version},
                {"required", require},
                {"up_to_date", up_to_date},
                {"missing", j_missing}});
  } else if (state.has_version_table) {
    std::cout << fmt::format("schema {} in database {}: version {}; required {}, latest known {}\n",
                             db.schema, db.dbname, state.version, require, k_latest_version);
    Table t({"version", "migration", "state"}, {true, false, false});
    for (const Migration& m : k_migrations) {
      const auto it = std::find(state.applied.begin(), state.applied.end(), m.version);
      const std::string st =
          it != state.applied.end()
              ? "applied " + state.applied_at[static_cast<std::size_t>(it - state.applied.begin())]
              : (m.version <= require ? "MISSING" : "not applied (not required)");
      t.add({std::to_string(m.version), m.file, st});
    }
    for (std::size_t i = 0; i < state.applied.size(); ++i) {
      if (state.applied[i] > k_latest_version) {
        t.add({std::to_string(state.applied[i]), "(newer than this txboxctl)",
               "applied " + state.applied_at[i]});
      }
    }
    t.print(std::cout);
    if (up_to_date) std::cout << "up to date\n";
  }
  if (!up_to_date) {
    try {
      require_version(state, db.schema, require, "this txbox build");
    } catch (const schema_error& e) {
      std::cerr << "txboxctl: " << e.what() << '\n';
    }
    return k_exit_schema;
  }
  return k_exit_ok;
}

}  // namespace txbox::ctl
