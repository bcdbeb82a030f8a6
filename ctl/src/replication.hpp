// txboxctl status: which server it reached and that server's standbys (pg_stat_replication),
// so that after a failover the operator sees the new primary and whether the relays'
// relay.wait_for_standbys can be met.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/transaction_base>
#include <string>
#include <vector>

namespace txbox::ctl {

struct StandbyRow {
  std::string name;  // application_name@client address
  std::string state, sync_state;
  std::int64_t flush_lag_bytes = 0;  // the primary's WAL position minus the standby's flush
};

struct Replication {
  std::string server;  // address:port of the server txboxctl reached ("local": a socket)
  bool in_recovery = false;
  /// nullopt: the user may not read the standbys' positions (pg_monitor).
  std::optional<std::vector<StandbyRow>> standbys;
};

/// Reads it with `tx` (read-only statements). Throws the database's errors.
Replication read_replication(pqxx::transaction_base& tx);

/// "Server: 127.0.0.1:5432, primary; standbys: node1@127.0.0.1 streaming async (flush lag 0 B)"
std::string describe(const Replication& r);
nlohmann::json to_json(const Replication& r);

}  // namespace txbox::ctl
