// txboxctl status: reading the report from the database (see status_report.hpp).
#include "status_report.hpp"

#include <algorithm>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::ctl {
namespace {

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

std::map<int, Lease> read_leases(pqxx::transaction_base& tx, const std::string& s) {
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
  return leases;
}

std::vector<RelaySeen> read_relays(pqxx::transaction_base& tx, const std::string& s,
                                   long lease_ttl_ms) {
  std::vector<RelaySeen> relays;
  for (const auto& row :
       pq::exec(tx,
                "SELECT name, " + sql_ts("seen_at") +
                    ", extract(epoch FROM now() - seen_at)::float8, "
                    "seen_at > now() - make_interval(secs => $1::float8 / 1000) FROM " +
                    s + ".outbox_relays ORDER BY name",
                lease_ttl_ms)) {
    relays.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<double>(),
                      row[3].as<bool>()});
  }
  return relays;
}

std::vector<OutboxDeadTopic> read_outbox_dead(pqxx::transaction_base& tx, const std::string& s) {
  std::vector<OutboxDeadTopic> dead;
  for (const auto& row : tx.exec("SELECT topic, count(*), " + sql_ts("max(failed_at)") + " FROM " +
                                 s + ".outbox_dead GROUP BY topic ORDER BY topic")) {
    dead.push_back({row[0].as<std::string>(), row[1].as<std::int64_t>(), row[2].as<std::string>()});
  }
  return dead;
}

// `has_requeue`: migration V3 (inbox_dead.requeued_at) is applied.
std::vector<InboxDeadConsumer> read_inbox_dead(pqxx::transaction_base& tx, const std::string& s,
                                               bool has_requeue) {
  std::vector<InboxDeadConsumer> dead;
  for (const auto& row :
       tx.exec("SELECT consumer, count(*), " +
               std::string(has_requeue ? "count(*) FILTER (WHERE requeued_at IS NOT NULL)" : "0") +
               ", " + sql_ts("max(failed_at)") + " FROM " + s +
               ".inbox_dead GROUP BY consumer ORDER BY consumer")) {
    dead.push_back({row[0].as<std::string>(), row[1].as<std::int64_t>(), row[2].as<std::int64_t>(),
                    row[3].as<std::string>()});
  }
  return dead;
}

std::vector<InboxOffset> read_inbox_offsets(pqxx::transaction_base& tx, const std::string& s) {
  std::vector<InboxOffset> offsets;
  for (const auto& row :
       tx.exec("SELECT consumer, topic, \"partition\", next_offset, " + sql_ts("updated_at") +
               ", extract(epoch FROM now() - updated_at)::float8 FROM " + s +
               ".inbox_offsets ORDER BY consumer, topic, \"partition\"")) {
    offsets.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int>(),
                       row[3].as<std::int64_t>(), row[4].as<std::string>(), row[5].as<double>()});
  }
  return offsets;
}

}  // namespace

StatusReport read_status_report(pqxx::transaction_base& tx, const Database& db,
                                const SchemaState& state, long lease_ttl_ms) {
  const std::string& s = db.s;
  StatusReport r;
  r.dbname = db.dbname;
  r.schema = db.schema;
  r.schema_version = state.version;
  r.lease_ttl_ms = lease_ttl_ms;
  r.leases = read_leases(tx, s);
  r.backlog = read_backlog(tx, s);
  r.relays = read_relays(tx, s, lease_ttl_ms);
  r.outbox_dead = read_outbox_dead(tx, s);
  r.inbox_dead = read_inbox_dead(tx, s, state.has(k_inbox_requeue_version));
  r.inbox_offsets = read_inbox_offsets(tx, s);
  r.at = pq::exec1(tx, "SELECT " + sql_ts("now()"))[0].as<std::string>();
  r.replication = read_replication(tx);
  return r;
}

}  // namespace txbox::ctl
