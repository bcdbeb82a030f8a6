// txboxctl: connecting (secrets never printed) and the schema version checks.
#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/validate.hpp"

namespace txbox::ctl {
namespace {

struct conninfo_options_deleter {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};
using conninfo_options_ptr = std::unique_ptr<PQconninfoOption, conninfo_options_deleter>;

struct pq_string_deleter {
  void operator()(char* s) const noexcept { PQfreemem(s); }
};
using pq_string_ptr = std::unique_ptr<char, pq_string_deleter>;

// libpq's parse errors quote the token they stumbled on, which may be a password ("missing
// "=" after "hunter2""): every quoted token is hidden but a lone punctuation mark.
std::string hide_quoted(std::string_view msg) {
  std::string out;
  std::size_t i = 0;
  while (i < msg.size()) {
    const auto open = msg.find('"', i);
    const auto close = open == std::string_view::npos ? open : msg.find('"', open + 1);
    if (close == std::string_view::npos) {
      out.append(msg.substr(i));
      break;
    }
    const auto token = msg.substr(open + 1, close - open - 1);
    const bool punctuation =
        token.size() == 1 && std::ispunct(static_cast<unsigned char>(token[0]));
    out.append(msg.substr(i, open + 1 - i));
    out.append(punctuation ? token : "***");
    out += '"';
    i = close + 1;
  }
  return out;
}

std::string one_line(std::string_view s) {
  std::string out;
  bool space = false;
  for (const char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

// The password given in the connection string (keyword or URI form), if any.
std::string password_of(const std::string& database_url) {
  char* err = nullptr;
  conninfo_options_ptr opts(PQconninfoParse(database_url.c_str(), &err));
  pq_string_ptr err_owner(err);
  if (!opts) return {};
  for (const PQconninfoOption* o = opts.get(); o->keyword; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val) return o->val;
  }
  return {};
}

}  // namespace

bool SchemaState::has(int v) const {
  return std::find(applied.begin(), applied.end(), v) != applied.end();
}

Database::Database() = default;
Database::~Database() = default;
Database::Database(Database&&) noexcept = default;

std::string clean_db_error(std::string_view what, const std::string& database_url) {
  std::string msg = redact_conninfo(one_line(what));
  const std::string password = password_of(database_url);
  if (!password.empty()) {
    for (auto at = msg.find(password); at != std::string::npos; at = msg.find(password, at)) {
      msg.replace(at, password.size(), "***");
      at += 3;
    }
  }
  return msg;
}

Database connect(const Options& options) {
  if (options.database_url.empty()) {
    throw config_error(
        "no database given. Hint: pass --database-url or set TXBOX_DATABASE_URL (libpq URI "
        "such as postgresql://user@host/db, or keyword form such as 'host=... dbname=...'); "
        "keep the password in PGPASSWORD or ~/.pgpass rather than on the command line");
  }
  const detail::schema_name schema(options.schema, "--schema");
  {
    char* err = nullptr;
    conninfo_options_ptr opts(PQconninfoParse(options.database_url.c_str(), &err));
    pq_string_ptr err_owner(err);
    if (!opts) {
      // Not printed: a string libpq cannot parse cannot be redacted reliably either.
      throw config_error(fmt::format(
          "--database-url is not a valid libpq connection string: {}. Hint: use a URI "
          "(postgresql://user@host:5432/db) or keyword=value pairs (host=... dbname=...)",
          hide_quoted(one_line(err ? err : "unknown error"))));
    }
  }
  // Defaults only: a value in the connection string or the environment wins.
  ::setenv("PGCONNECT_TIMEOUT", "10", 0);
  ::setenv("PGAPPNAME", "txboxctl", 0);

  Database db;
  db.schema = schema.name();
  db.s = schema.quoted();
  try {
    db.conn = std::make_unique<pqxx::connection>(options.database_url);
    db.dbname = db.conn->dbname();
  } catch (const std::exception& e) {
    throw unreachable_error(fmt::format("cannot connect to the database ({}): {}",
                                        redact_conninfo(options.database_url),
                                        clean_db_error(e.what(), options.database_url)));
  }
  return db;
}

SchemaState read_schema_state(pqxx::transaction_base& tx, const std::string& schema) {
  SchemaState st;
  st.schema_exists =
      pq::exec1(tx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema)[0]
          .as<bool>();
  if (!st.schema_exists) return st;
  const std::string table = detail::schema_name(schema).table("schema_version");
  st.has_version_table = !pq::exec1(tx, "SELECT to_regclass($1)", table)[0].is_null();
  if (!st.has_version_table) return st;
  const auto rows =
      tx.exec("SELECT version, " + sql_ts("applied_at") + " FROM " + table + " ORDER BY version");
  for (const auto& row : rows) {
    st.applied.push_back(row[0].as<int>());
    st.applied_at.push_back(row[1].is_null() ? "" : row[1].as<std::string>());
  }
  st.version = st.applied.empty() ? 0 : st.applied.back();
  return st;
}

std::vector<const Migration*> missing_migrations(const SchemaState& state, int upto) {
  std::vector<const Migration*> out;
  for (const Migration& m : k_migrations) {
    if (m.version <= upto && !state.has(m.version)) out.push_back(&m);
  }
  return out;
}

namespace {

std::string apply_hint(const std::vector<const Migration*>& missing, const std::string& schema) {
  std::string files;
  for (const Migration* m : missing) {
    if (!files.empty()) files += ", ";
    files += fmt::format("migrations/{}", m->file);
  }
  std::string hint = fmt::format("Hint: apply {} in this order (docs/migrations.md)", files);
  if (schema != "txbox") {
    hint += fmt::format(", rendered for this schema by migrations/render.sh {}", schema);
  }
  return hint;
}

}  // namespace

void require_version(const SchemaState& state, const std::string& schema, int needed,
                     std::string_view command) {
  const auto missing = missing_migrations(state, needed);
  if (!state.schema_exists) {
    throw schema_error(fmt::format("schema '{}' does not exist: no txbox migration is applied. {}",
                                   schema, apply_hint(missing, schema)));
  }
  if (!state.has_version_table) {
    throw schema_error(
        fmt::format("schema '{}' has no txbox tables (no {}.schema_version): no txbox migration "
                    "is applied. {}",
                    schema, schema, apply_hint(missing, schema)));
  }
  if (!missing.empty()) {
    throw schema_error(fmt::format("schema '{}' is at version {}; {} needs version {}. {}", schema,
                                   state.version, command, needed, apply_hint(missing, schema)));
  }
}

}  // namespace txbox::ctl
