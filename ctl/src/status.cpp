// txboxctl status and txboxctl schema check.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "output.hpp"
#include "status_render.hpp"
#include "status_report.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::ctl {
namespace {

using json = nlohmann::json;
using snapshot = pq::read_only_snapshot;

}  // namespace

int cmd_status(const Options& o, const StatusOptions& so) {
  Database db = connect(o);
  // Autocommit: each statement reads its own snapshot and none is held across them (a long
  // snapshot holds back vacuum of the delete-heavy outbox).
  pqxx::nontransaction tx(*db.conn);
  const SchemaState state = read_schema_state(tx, db.schema);
  require_version(state, db.schema, k_relays_version, "txboxctl status");
  const StatusReport report = read_status_report(tx, db, state, so.lease_ttl_ms);
  tx.commit();
  if (o.json) {
    print_json(status_json(report));
  } else {
    std::cout << status_text(report);
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
