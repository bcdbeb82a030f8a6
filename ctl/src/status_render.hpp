// txboxctl status: the report (status_report.hpp) as text for a person or JSON for a script.
// Pure functions: no database, no output stream.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "status_report.hpp"

namespace txbox::ctl {

/// The shards one owner holds (or held: expired).
struct LeaseGroup {
  std::string owner;
  bool expired = false;
  std::vector<int> shards{};  ///< ascending
  double min_in = 0;          ///< seconds until the first of them expires
  double max_in = 0;          ///< ... and the last
};

/// The leases by owner: what the "Leases" section and "leases" object show.
struct LeaseSummary {
  std::vector<LeaseGroup> groups{};  ///< by owner, held before expired
  std::vector<int> unowned{};        ///< shards never owned or released, ascending
  std::size_t held = 0;              ///< shards under a lease that has not expired
};

/// Groups `leases` (by shard) by owner and state.
LeaseSummary summarize_leases(const std::map<int, Lease>& leases);

/// What `txboxctl status` prints: a heading, the server, then one section per part.
std::string status_text(const StatusReport& report);

/// What `txboxctl status --json` prints (before indenting).
nlohmann::json status_json(const StatusReport& report);

}  // namespace txbox::ctl
