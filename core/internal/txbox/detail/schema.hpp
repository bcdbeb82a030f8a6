// The database contract every part shares: the validated schema name that quotes table names
// once, the shard count, the advisory-lock namespace and SQL, the NOTIFY channel; the schema
// versions each part needs come from txbox/schema_version.hpp. Used by outbox, relay, inbox
// and txboxctl. Internal (not installed).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "txbox/schema_version.hpp"

namespace txbox::detail {

/// Shards of the outbox (migrations/V1: shard = hashtext(coalesce(key, message_id)) & 63).
inline constexpr int shard_count = 64;

/// First key of pg_advisory_xact_lock(int, int) for per-key locks: "tx" in ASCII, so txbox's
/// locks never collide with an application's single-key advisory locks.
inline constexpr int lock_namespace = 0x7478;

// The schema versions each part needs: txbox/schema_version.hpp (public), the one definition.

/// A schema name checked as an SQL identifier; hands out quoted table names.
/// Example: schema_name s("txbox"); s.table("outbox") == "\"txbox\".outbox".
class schema_name {
 public:
  /// Throws config_error naming `key` when `name` is not a plain SQL identifier.
  explicit schema_name(std::string name, std::string_view key = "database.schema");

  [[nodiscard]] const std::string& name() const { return m_name; }
  /// "\"<schema>\"".
  [[nodiscard]] const std::string& quoted() const { return m_quoted; }
  /// "\"<schema>\".<table>" (table names are txbox's own constants).
  [[nodiscard]] std::string table(std::string_view table) const;
  /// The channel the outbox's trigger NOTIFYs (migrations/V2): "<schema>.outbox".
  [[nodiscard]] std::string notify_channel() const { return m_name + ".outbox"; }

 private:
  std::string m_name;
  std::string m_quoted;
};

/// SQL that takes the per-key transaction-scoped advisory locks of the keys produced by
/// `keys_sql` (an SQL expression yielding a set of text keys, e.g. "SELECT key FROM v" or
/// "SELECT unnest($1::text[])"), in hash order so that two lockers never deadlock; evaluates
/// to one row with the number of distinct keys locked. Writers, txboxctl's requeue and any
/// SQL writer use this same lock, so one key's writers are serialised together.
[[nodiscard]] std::string key_lock_sql(std::string_view keys_sql);

/// The writers' insert of `rows` messages into `table` (a quoted "<schema>".outbox), one
/// statement: parameters grouped by column ($1..$n message ids as uuid, $n+1..$2n topics, then
/// keys, payloads as bytea, headers as jsonb); rows whose id is NULL are padding and skipped.
/// With `lock`, every key's advisory lock (key_lock_sql) is taken first, in an InitPlan that
/// PostgreSQL evaluates once before the first row gets its identity id: so for one key, id
/// order is commit order. Rows get their ids in the order given. Without `lock`: the same
/// statement unlocked (for benchmarks only).
[[nodiscard]] std::string outbox_insert_sql(std::string_view table, std::size_t rows,
                                            bool lock = true);

}  // namespace txbox::detail
