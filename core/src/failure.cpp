// The failure classifier: libpqxx 6.4's exception types and PostgreSQL's SQLSTATEs.
#include "txbox/detail/failure.hpp"

#include <pqxx/except>

#include "txbox/error.hpp"

namespace txbox::detail {
namespace {

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string permanent_hint(std::string_view sqlstate) {
  if (sqlstate == "42501") {
    return "grant the txbox role to the database user (txbox_relay, txbox_consumer or "
           "txbox_writer; see docs/migrations.md)";
  }
  if (sqlstate.starts_with("42") || sqlstate == "3F000") {
    return "apply every migration in migrations/ (docs/migrations.md) and check database.schema";
  }
  if (sqlstate.starts_with("28")) return "check the user and password in database.url";
  if (sqlstate == "3D000") return "check the database name in database.url";
  return {};
}

template <class T>
bool is_a(const pqxx::sql_error& e) {
  return dynamic_cast<const T*>(&e) != nullptr;
}

// The SQLSTATE (or its class) that libpqxx 6.4 maps to each sql_error subclass it throws.
std::string sqlstate_of_type(const pqxx::sql_error& e) {
  if (is_a<pqxx::insufficient_privilege>(e)) return "42501";
  if (is_a<pqxx::undefined_table>(e)) return "42P01";
  if (is_a<pqxx::undefined_column>(e)) return "42703";
  if (is_a<pqxx::undefined_function>(e)) return "42883";
  if (is_a<pqxx::syntax_error>(e)) return "42601";
  if (is_a<pqxx::unique_violation>(e)) return "23505";
  if (is_a<pqxx::foreign_key_violation>(e)) return "23503";
  if (is_a<pqxx::not_null_violation>(e)) return "23502";
  if (is_a<pqxx::check_violation>(e)) return "23514";
  if (is_a<pqxx::integrity_constraint_violation>(e)) return "23000";
  if (is_a<pqxx::data_exception>(e)) return "22000";
  if (is_a<pqxx::feature_not_supported>(e)) return "0A000";
  if (is_a<pqxx::disk_full>(e)) return "53100";
  if (is_a<pqxx::out_of_memory>(e)) return "53200";
  if (is_a<pqxx::insufficient_resources>(e)) return "53000";
  if (is_a<pqxx::invalid_cursor_state>(e)) return "24000";
  if (is_a<pqxx::invalid_sql_statement_name>(e)) return "26000";
  if (is_a<pqxx::invalid_cursor_name>(e)) return "34000";
  if (is_a<pqxx::plpgsql_error>(e)) return "P0001";
  return {};
}

failure make(failure_kind kind, bool reconnect, std::string sqlstate, std::string_view what) {
  failure f;
  f.kind = kind;
  f.reconnect = reconnect;
  f.message = one_line(what);
  if (kind == failure_kind::db_permanent) f.hint = permanent_hint(sqlstate);
  f.sqlstate = std::move(sqlstate);
  return f;
}

}  // namespace

failure_kind classify_sqlstate(std::string_view s, bool& reconnect) {
  reconnect = false;
  if (s.size() != 5) return failure_kind::db_permanent;
  const std::string_view cls = s.substr(0, 2);
  if (cls == "08") {  // connection exception
    reconnect = true;
    return failure_kind::db_transient;
  }
  if (cls == "40") {  // transaction rollback: serialization, deadlock, completion unknown
    if (s == "40002") return failure_kind::db_permanent;  // integrity violation at commit
    reconnect = s == "40003";
    return failure_kind::db_transient;
  }
  if (cls == "53" || cls == "58") return failure_kind::db_transient;  // resources, system
  if (s == "55P03" || s == "55006" || s == "57014" || s == "72000") {
    return failure_kind::db_transient;  // lock timeout, object in use, cancel, snapshot too old
  }
  if (s == "57P01" || s == "57P02" || s == "57P03" || s == "57P05" || s == "25006" ||
      s == "25P03") {
    // Admin/crash shutdown, starting up, idle session timeout; a read-only transaction (the
    // session is on a standby after a failover); idle-in-transaction timeout.
    reconnect = true;
    return failure_kind::db_transient;
  }
  return failure_kind::db_permanent;
}

failure classify(const std::exception_ptr& e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const pqxx::in_doubt_error& x) {
      return make(failure_kind::db_transient, true, "", x.what());
    } catch (const pqxx::broken_connection& x) {
      // A connection refused for a reason of configuration (a database that does not exist,
      // failed authentication): an operator must act; retried slowly, on a new connection.
      if (auto refusal = classify_connect_refusal(x.what())) {
        failure f = make(failure_kind::db_permanent, true, std::move(refusal->sqlstate), x.what());
        f.hint = std::move(refusal->hint);
        return f;
      }
      return make(failure_kind::db_transient, true, "08006", x.what());
    } catch (const pqxx::serialization_failure& x) {
      return make(failure_kind::db_transient, false, "40001", x.what());
    } catch (const pqxx::deadlock_detected& x) {
      return make(failure_kind::db_transient, false, "40P01", x.what());
    } catch (const pqxx::statement_completion_unknown& x) {
      return make(failure_kind::db_transient, true, "40003", x.what());
    } catch (const pqxx::transaction_rollback& x) {
      return make(failure_kind::db_transient, false, "40000", x.what());
    } catch (const pqxx::sql_error& x) {
      // libpqxx 6.4 throws its sql_error subclasses without the SQLSTATE: name it by type.
      const std::string state = x.sqlstate().empty() ? sqlstate_of_type(x) : x.sqlstate();
      bool reconnect = false;
      const auto kind =
          state.empty() ? failure_kind::db_transient : classify_sqlstate(state, reconnect);
      // No SQLSTATE: libpq reported no server error (the connection went away mid-query).
      if (state.empty()) reconnect = true;
      return make(kind, reconnect, state, x.what());
    } catch (const pqxx::failure& x) {
      // Other libpqxx run-time failures concern the connection (e.g. "lost connection").
      return make(failure_kind::db_transient, true, "", x.what());
    } catch (const config_error& x) {
      return make(failure_kind::config, false, "", x.what());
    } catch (const kafka_call_error& x) {
      return make(x.kind, false, "", x.what());
    } catch (const schema_error& x) {
      failure f = make(failure_kind::db_permanent, false, "", x.what());
      f.hint = "apply the migrations (docs/migrations.md)";
      return f;
    } catch (const transient_error& x) {
      return make(failure_kind::db_transient, true, "", x.what());
    } catch (const std::exception& x) {
      // pqxx::usage_error, conversion_error, range_error, std::logic_error, bad_alloc, ...
      return make(failure_kind::bug, true, "", x.what());
    } catch (...) {
      return make(failure_kind::bug, true, "", "an exception that is not a std::exception");
    }
  } catch (...) {
    failure f;  // building the description itself failed (out of memory)
    f.reconnect = true;
    return f;
  }
}

failure classify_current() noexcept {
  return classify(std::current_exception());
}

const char* kind_name(failure_kind kind) noexcept {
  switch (kind) {
    case failure_kind::db_transient:
      return "database transient";
    case failure_kind::db_permanent:
      return "database permanent";
    case failure_kind::kafka_transient:
      return "kafka transient";
    case failure_kind::kafka_permanent:
      return "kafka permanent";
    case failure_kind::kafka_fatal:
      return "kafka fatal";
    case failure_kind::config:
      return "configuration";
    case failure_kind::bug:
      return "bug";
  }
  return "unknown";
}

}  // namespace txbox::detail
