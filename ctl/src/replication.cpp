// txboxctl status: the server and its standbys (see replication.hpp).
#include "replication.hpp"
#include "txbox/detail/pq.hpp"

#include <fmt/format.h>

#include <pqxx/pqxx>

namespace txbox::ctl {

Replication read_replication(pqxx::transaction_base& tx) {
  Replication r;
  const auto head =
      pq::exec1(tx,
                "SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local'), "
                "pg_is_in_recovery(), pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')");
  r.server = head[0].as<std::string>();
  r.in_recovery = head[1].as<bool>();
  if (!head[2].as<bool>() || r.in_recovery) return r;
  std::vector<StandbyRow> rows;
  for (const auto& f : tx.exec(
           "SELECT coalesce(nullif(application_name, ''), 'walreceiver') || '@' || "
           "coalesce(host(client_addr), 'local'), coalesce(state, ''), coalesce(sync_state, ''), "
           "pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint FROM pg_stat_replication r "
           "WHERE flush_lsn IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s "
           "WHERE s.active_pid = r.pid AND s.slot_type = 'logical') ORDER BY 1")) {
    rows.push_back({f[0].as<std::string>(), f[1].as<std::string>(), f[2].as<std::string>(),
                    f[3].as<std::int64_t>()});
  }
  r.standbys = std::move(rows);
  return r;
}

std::string describe(const Replication& r) {
  std::string out =
      fmt::format("Server: {}, {}", r.server, r.in_recovery ? "a standby (read-only)" : "primary");
  if (r.in_recovery) return out;
  if (!r.standbys) return out + "; standbys: not shown (GRANT pg_monitor to see them)";
  if (r.standbys->empty()) return out + "; standbys: none";
  out += "; standbys:";
  const char* sep = " ";
  for (const auto& s : *r.standbys) {
    out += fmt::format("{}{} {} {} (flush lag {} B)", sep, s.name, s.state, s.sync_state,
                       s.flush_lag_bytes);
    sep = ", ";
  }
  return out;
}

nlohmann::json to_json(const Replication& r) {
  nlohmann::json j = {{"address", r.server}, {"in_recovery", r.in_recovery}};
  if (!r.standbys) {
    j["standbys"] = nullptr;
    return j;
  }
  j["standbys"] = nlohmann::json::array();
  for (const auto& s : *r.standbys) {
    j["standbys"].push_back({{"name", s.name},
                             {"state", s.state},
                             {"sync_state", s.sync_state},
                             {"flush_lag_bytes", s.flush_lag_bytes}});
  }
  return j;
}

}  // namespace txbox::ctl
