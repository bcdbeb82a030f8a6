// The writers' bench: its arms, their statements, and the tables they write to.
#include <fmt/format.h>

#include <regex>
#include <sstream>
#include <stdexcept>

#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "writer_bench.hpp"

namespace pq = txbox::pq;

namespace wb {
namespace {

std::string quoted(const std::string& name) {
  return "\"" + name + "\"";
}

std::string bench_table(const std::string& name) {
  return quoted(k_schema) + "." + quoted(name);
}

// A row of `n` parameters grouped by column ($1..$n ids, $n+1..$2n topics, ...), as
// outbox/src/outbox.cpp binds them.
std::string row_params(int r, int n) {
  const int p = r + 1;
  return fmt::format("(${}::uuid, ${}::text, ${}::text, ${}::bytea, ${}::jsonb)", p, p + n,
                     p + 2 * n, p + 3 * n, p + 4 * n);
}

// INSERT ... VALUES, or (select) INSERT ... SELECT * FROM (VALUES ...) to add a WHERE.
std::string plain_sql(const std::string& table, int n, bool select = false) {
  std::string values;
  for (int r = 0; r < n; ++r) values += (r ? ", " : "") + row_params(r, n);
  const std::string insert =
      fmt::format("INSERT INTO {} (message_id, topic, key, payload, headers) ", table);
  if (!select) return insert + "VALUES " + values;
  return insert + "SELECT * FROM (VALUES " + values +
         ") AS v(message_id, topic, key, payload, headers)";
}

// One statement calling <schema>.enqueue once per message, in the keys' hash order (as the
// C++ batch locks them: two transactions never take two keys in opposite orders).
std::string sql_enqueue_sql(const std::string& schema, int n) {
  std::string values;
  for (int r = 0; r < n; ++r)
    values += fmt::format("{}(${}::text, ${}::bytea)", r ? ", " : "", 4 + r, 4 + n + r);
  return fmt::format(
      "SELECT {}.enqueue($1::text, v.k, v.p, $2::jsonb, $3::text) FROM (SELECT k, p FROM "
      "(VALUES {}) AS v0(k, p) ORDER BY hashtext(k) OFFSET 0) AS v",
      schema, values);
}

// "autovacuum_vacuum_scale_factor=0.01" and the like, checked before they go into DDL.
std::string checked_reloption(const std::string& option) {
  static const std::regex ok("[a-z_]+=[0-9.]+");
  if (!std::regex_match(option, ok)) throw std::runtime_error("unexpected reloption " + option);
  return option;
}

// The outbox table's storage parameters (autovacuum settings), copied to a plain copy:
// LIKE ... INCLUDING ALL does not copy them.
void copy_reloptions(pqxx::work& tx, const std::string& from, const std::string& to) {
  const pqxx::result r =
      pq::exec(tx, "SELECT unnest(reloptions) FROM pg_class WHERE oid = $1::regclass", from);
  std::string opts;
  for (const auto& row : r) opts += (opts.empty() ? "" : ", ") + checked_reloption(row[0].c_str());
  if (!opts.empty()) pq::exec0(tx, fmt::format("ALTER TABLE {} SET ({})", to, opts));
}

Arm plain_arm(std::string name, std::string label, std::string table, bool probe) {
  return Arm{.name = std::move(name),
             .label = std::move(label),
             .kind = Kind::plain,
             .table = std::move(table),
             .probe = probe};
}

}  // namespace

std::vector<Arm> make_arms(const Options& o) {
  const std::string plain = bench_table("outbox_plain");
  auto outbox = [](const std::string& schema) {
    return std::make_shared<const txbox::Outbox>(txbox::OutboxConfig{.schema = schema});
  };
  std::vector<Arm> arms{
      plain_arm("plain", "plain INSERT (baseline)", plain, false),
      Arm{.name = "plain_lock",
          .label = "plain + key lock",
          .kind = Kind::plain_lock,
          .table = plain},
      Arm{.name = "cpp_v6", .label = "C++ enqueue, V6", .kind = Kind::cpp, .outbox = outbox(o.v6)},
      Arm{.name = "sql_v6", .label = "SQL enqueue, V6", .kind = Kind::sql, .schema = quoted(o.v6)},
      Arm{.name = "cpp_v5",
          .label = "C++ enqueue, V5 (NOTIFY trigger)",
          .kind = Kind::cpp,
          .outbox = outbox(o.v5)},
      Arm{.name = "sql_v5",
          .label = "SQL enqueue, V5 (NOTIFY trigger)",
          .kind = Kind::sql,
          .schema = quoted(o.v5)},
      // Serialisation probes.
      Arm{.name = "orders_only",
          .label = "probe: the order alone, no outbox row",
          .kind = Kind::orders_only,
          .probe = true},
      Arm{.name = "plain_stmt",
          .label = "probe: plain, txbox's statement without the lock",
          .kind = Kind::plain_stmt,
          .table = plain,
          .probe = true},
      Arm{.name = "plain_v4",
          .label = "probe: plain, random UUIDv4 message_id",
          .kind = Kind::plain,
          .table = plain,
          .v4_ids = true,
          .probe = true},
      plain_arm("plain_cache", "probe: plain, identity CACHE 100", bench_table("outbox_cache"),
                true),
      plain_arm("plain_noidx", "probe: plain, no indexes (heap only)", bench_table("outbox_noidx"),
                true),
      Arm{.name = "lock_hot",
          .label = "probe: plain + key lock, one key for all",
          .kind = Kind::plain_lock,
          .table = plain,
          .one_key = true,
          .probe = true},
  };
  return arms;
}

void setup_tables(pqxx::connection& db, const Options& o) {
  const std::string source = quoted(o.v6) + ".outbox";
  pqxx::work tx(db);
  pq::exec0(tx, fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", quoted(k_schema)));
  pq::exec0(tx, fmt::format("CREATE SCHEMA {}", quoted(k_schema)));
  pq::exec0(
      tx,
      fmt::format(
          "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT "
          "NULL, amount bigint NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())",
          bench_table("orders")));
  for (const char* name : {"outbox_plain", "outbox_cache"}) {
    pq::exec0(tx,
              fmt::format("CREATE TABLE {} (LIKE {} INCLUDING ALL)", bench_table(name), source));
    copy_reloptions(tx, source, bench_table(name));
  }
  pq::exec0(
      tx, fmt::format("ALTER TABLE {} ALTER COLUMN id SET CACHE 100", bench_table("outbox_cache")));
  pq::exec0(tx, fmt::format("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)",
                            bench_table("outbox_noidx"), source));
  copy_reloptions(tx, source, bench_table("outbox_noidx"));
  tx.commit();
}

void reset_tables(pqxx::connection& db, pqxx::connection* admin, const Options& o) {
  {
    pqxx::work tx(db);
    pq::exec0(tx, fmt::format("TRUNCATE {}, {}, {}, {}, {}.outbox, {}.outbox RESTART IDENTITY",
                              bench_table("orders"), bench_table("outbox_plain"),
                              bench_table("outbox_cache"), bench_table("outbox_noidx"),
                              quoted(o.v6), quoted(o.v5)));
    tx.commit();
  }
  // Every cell starts right after a checkpoint: the same full-page images in its WAL.
  if (admin) pq::exec0(pqxx::nontransaction(*admin), "CHECKPOINT");
}

std::string arm_sql(const Arm& arm, int n) {
  switch (arm.kind) {
    case Kind::plain:
      return plain_sql(arm.table, n);
    case Kind::plain_stmt:
      return txbox::detail::outbox_insert_sql(arm.table, static_cast<std::size_t>(n), false);
    case Kind::plain_lock:
      return txbox::detail::outbox_insert_sql(arm.table, static_cast<std::size_t>(n), true);
    case Kind::sql:
      return sql_enqueue_sql(arm.schema, n);
    case Kind::cpp:
    case Kind::orders_only:
      return "";
  }
  return "";
}

}  // namespace wb
