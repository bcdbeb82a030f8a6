// The standby gate (see standby_gate.hpp).
#include "standby_gate.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <thread>

#include "txbox/error.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

// Polls of pg_stat_replication: the first soon (a streaming standby usually confirms within a
// millisecond or two of the primary's flush), then every few milliseconds while it lags (the
// wait overshoots the standby's confirmation by at most that), and slowly while too few
// standbys are connected at all (that lasts).
constexpr auto k_first_poll = 500us;
constexpr auto k_max_poll = 4ms;
constexpr auto k_absent_poll = 100ms;

std::string names(const std::vector<Standby>& standbys) {
  if (standbys.empty()) return "none connected";
  std::string out;
  for (const auto& s : standbys) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {} flushed {}", s.name, s.state, s.flush_lsn);
  }
  return out;
}

}  // namespace

StandbyGate::StandbyGate(int required) : m_required(required) {}

void StandbyGate::check_privilege(pqxx::connection& db) const {
  if (!enabled()) return;
  pqxx::nontransaction tx(db);
  const auto r = tx.exec1(
      "SELECT current_user::text, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')");
  if (!r[1].as<bool>()) {
    const auto user = r[0].as<std::string>();
    throw config_error(fmt::format(
        "relay.wait_for_standbys = {} needs the standbys' WAL positions in pg_stat_replication, "
        "which database user {} may not read. Hint: GRANT pg_monitor TO {} (as a superuser), "
        "or set relay.wait_for_standbys = 0",
        m_required, user, tx.quote_name(user)));
  }
}

std::vector<Standby> StandbyGate::look(pqxx::connection& db, const std::string& lsn) const {
  pqxx::nontransaction tx(db);
  const auto r = tx.exec_params(
      "SELECT coalesce(nullif(r.application_name, ''), 'walreceiver') || '@' || "
      "coalesce(host(r.client_addr), 'local'), coalesce(r.state, ''), r.flush_lsn::text, "
      "r.flush_lsn >= $1::pg_lsn FROM pg_stat_replication r WHERE r.flush_lsn IS NOT NULL "
      "AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid "
      "AND s.slot_type = 'logical') ORDER BY 1",
      lsn);
  std::vector<Standby> out;
  out.reserve(r.size());
  for (const auto& f : r) {
    out.push_back({.name = f[0].as<std::string>(),
                   .state = f[1].as<std::string>(),
                   .flush_lsn = f[2].as<std::string>(),
                   .flushed = f[3].as<bool>()});
  }
  return out;
}

StandbyVerdict StandbyGate::wait(pqxx::connection& db, std::size_t rows,
                                 const std::stop_token& stop, clock::time_point until) {
  StandbyVerdict v;
  if (!enabled()) return v;
  const auto start = clock::now();
  {
    pqxx::nontransaction tx(db);
    const auto f = tx.exec1(
        "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text "
        "END")[0];
    if (f.is_null()) {
      throw transient_error(
          "the database session is on a standby (recovery in progress): reconnecting to find "
          "the primary (use target_session_attrs=read-write in database.url)");
    }
    v.lsn = f.as<std::string>();
  }
  auto pause = std::chrono::duration_cast<std::chrono::microseconds>(k_first_poll);
  for (;;) {
    v.standbys = look(db, v.lsn);
    v.flushed = static_cast<std::size_t>(std::count_if(v.standbys.begin(), v.standbys.end(),
                                                       [](const auto& s) { return s.flushed; }));
    v.pass = v.flushed >= static_cast<std::size_t>(m_required);
    const bool absent = v.standbys.size() < static_cast<std::size_t>(m_required);
    const std::chrono::microseconds next = absent ? k_absent_poll : pause;
    if (v.pass || stop.stop_requested() || clock::now() + next >= until) break;
    std::this_thread::sleep_for(next);  // at most 100 ms: a stop is seen soon enough
    pause = std::min<std::chrono::microseconds>(pause * 2, k_max_poll);
  }
  v.waited = clock::now() - start;
  report(v, rows);
  return v;
}

std::optional<StandbyVerdict> StandbyGate::nothing_claimed() {
  if (!m_holding) return std::nullopt;
  spdlog::info(
      "standbys: no rows left to hold after {:.1f} s (the held rows are gone: lost with a "
      "failed-over primary, or their shards moved to another relay)",
      std::chrono::duration<double>(clock::now() - m_hold_since).count());
  m_holding = false;
  m_waiting_on.clear();
  return StandbyVerdict{};
}

void StandbyGate::report(const StandbyVerdict& v, std::size_t rows) {
  if (v.pass) {
    if (m_holding) {
      spdlog::info(
          "standbys: {} of {} required standby(s) caught up ({}); publishing again after "
          "{:.1f} s",
          v.flushed, m_required, names(v.standbys),
          std::chrono::duration<double>(clock::now() - m_hold_since).count());
    }
    m_holding = false;
    m_waiting_on.clear();
    return;
  }
  const std::string seen = names(v.standbys);
  // The flush positions move while a standby catches up: the line names who is connected.
  std::string who;
  for (const auto& s : v.standbys) who += s.name + " " + s.state + ";";
  if (m_holding && who == m_waiting_on) return;
  if (!m_holding) m_hold_since = clock::now();
  m_holding = true;
  m_waiting_on = who;
  spdlog::warn(
      "standbys: holding the claimed rows in the outbox ({} in this round; the gauge "
      "txbox_relay_standby_held_rows follows): relay.wait_for_standbys = {} but {} standby(s) "
      "flushed past {} ({}); publishing resumes by itself when enough standbys catch up",
      rows, m_required, v.flushed, v.lsn, seen);
}

}  // namespace txbox::relay
