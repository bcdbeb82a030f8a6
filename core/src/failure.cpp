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
      bool reconnect = false;
      const auto kind = x.sqlstate().empty() ? failure_kind::db_transient
                                             : classify_sqlstate(x.sqlstate(), reconnect);
      // No SQLSTATE: libpq reported no server error (the connection went away mid-query).
      if (x.sqlstate().empty()) reconnect = true;
      return make(kind, reconnect, x.sqlstate(), x.what());
    } catch (const pqxx::failure& x) {
      // Other libpqxx run-time failures concern the connection (e.g. "lost connection").
      return make(failure_kind::db_transient, true, "", x.what());
    } catch (const config_error& x) {
      return make(failure_kind::config, false, "", x.what());
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
