// txboxctl: shared declarations of the commands, their options and exit codes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/connection>
#include <pqxx/transaction_base>

#include "txbox/error.hpp"
#include "txbox/schema_version.hpp"

namespace txbox::ctl {

/// Exit codes: what a script can branch on.
inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_failed = 1;       ///< the operation failed (unknown id, SQL error)
inline constexpr int k_exit_unreachable = 2;  ///< the database cannot be reached
inline constexpr int k_exit_config = 3;       ///< bad usage or configuration
inline constexpr int k_exit_schema = 4;       ///< schema missing or older than needed
inline constexpr int k_exit_transient =
    5;  ///< a temporary database failure: nothing changed, retry

/// The database cannot be reached (or the connection broke). Exit code 2.
class unreachable_error : public error {
 public:
  using error::error;
};

/// Options every command takes.
struct Options {
  std::string database_url{};  ///< libpq URI or keyword=value; never printed unredacted
  std::string schema{"txbox"};
  bool json{false};
};

/// A migration this build knows, in version order.
struct Migration {
  int version;
  const char* file;
  const char* description;
};
inline constexpr std::array<Migration, 7> k_migrations{{
    {1, "V1__create_txbox_schema.sql", "create txbox schema"},
    {2, "V2__relay_members_and_notify.sql", "relay members and notify"},
    {3, "V3__inbox_requeue.sql", "inbox requeue"},
    {4, "V4__sql_enqueue.sql", "sql enqueue"},
    {5, "V5__outbox_identity.sql", "outbox identity"},
    {6, "V6__relay_probe_wakeup.sql", "relay probe wake-up, no notify trigger"},
    {7, "V7__sql_enqueue_fast_path.sql", "sql enqueue fast path"},
}};
inline constexpr int k_latest_version = k_migrations.back().version;
static_assert(relay_schema_version <= k_latest_version &&
                  inbox_schema_version <= k_latest_version &&
                  sql_enqueue_schema_version <= k_latest_version,
              "txbox/schema_version.hpp names a migration k_migrations lacks");

/// The migrations that added what txboxctl's commands read (a command needs that version).
inline constexpr int k_outbox_dead_version = outbox_schema_version;  ///< outbox_dead (V1)
inline constexpr int k_relays_version = 2;                           ///< outbox_relays: status (V2)
inline constexpr int k_inbox_requeue_version = 3;  ///< inbox_dead.requeued_at (V3)

/// What schema_version says about a schema.
struct SchemaState {
  bool schema_exists = false;
  bool has_version_table = false;
  std::vector<int> applied{};             ///< versions in schema_version, ascending
  std::vector<std::string> applied_at{};  ///< RFC 3339 UTC, parallel to `applied`
  int version = 0;                        ///< highest applied version, 0 if none
  [[nodiscard]] bool has(int v) const;
};

/// txboxctl's connection to the database that holds the txbox schema: the open connection, the
/// schema name (validated) and its quoted form for SQL text, and the database's name. (Not the
/// relay's relay::Session, which also paces and checks the relay's rounds.)
struct Database {
  std::unique_ptr<pqxx::connection> conn;
  std::string schema;  ///< validated, unquoted
  std::string s;       ///< quoted, for SQL text
  std::string dbname;
  Database();
  ~Database();
  Database(Database&&) noexcept;
};

/// Validates the options and connects. Throws config_error (no or malformed URL, bad schema
/// name) or unreachable_error (with the redacted conninfo; never the password).
Database connect(const Options& options);

/// Reads the schema's applied versions (schema_version), without failing when it is missing.
SchemaState read_schema_state(pqxx::transaction_base& tx, const std::string& schema);

/// Throws schema_error naming the migration files to apply unless `state` has every version
/// up to `needed`. `command` names what needs it (e.g. "txboxctl status").
void require_version(const SchemaState& state, const std::string& schema, int needed,
                     std::string_view command);

/// "migrations/V2__x.sql, migrations/V3__y.sql" for the known versions up to `upto` that
/// `state` lacks.
std::vector<const Migration*> missing_migrations(const SchemaState& state, int upto);

/// SQL for the RFC 3339 UTC text of a timestamptz expression.
inline std::string sql_ts(const std::string& expr) {
  return "to_char(" + expr + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

/// Makes a libpq error message one line with no secret in it.
std::string clean_db_error(std::string_view what, const std::string& database_url);

// ---- commands; each prints its result and returns the exit code ----

struct StatusOptions {
  long lease_ttl_ms = 10'000;  ///< a relay seen within this is live (relay.lease_ttl_ms)
};
int cmd_status(const Options& o, const StatusOptions& so);

int cmd_schema_check(const Options& o, int require);

struct DeadListOptions {
  long limit = 100;
  std::string topic{};     ///< outbox: only this topic (empty: all)
  std::string consumer{};  ///< inbox: only this consumer (empty: all)
};
struct RequeueOptions {
  std::vector<std::int64_t> ids{};
  bool all = false;
  std::string topic{};     ///< outbox --all: only this topic
  std::string consumer{};  ///< inbox: required with --all
  long batch_size = 500;
};

int cmd_outbox_dead_list(const Options& o, const DeadListOptions& lo);
int cmd_outbox_dead_show(const Options& o, std::int64_t id);
int cmd_outbox_dead_requeue(const Options& o, const RequeueOptions& ro);
int cmd_inbox_dead_list(const Options& o, const DeadListOptions& lo);
int cmd_inbox_dead_show(const Options& o, std::int64_t id);
int cmd_inbox_dead_requeue(const Options& o, const RequeueOptions& ro);

}  // namespace txbox::ctl
