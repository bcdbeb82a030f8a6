// The standby gate (see standby_gate.hpp).
#include "standby_gate.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "txbox/detail/pq.hpp"
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

// The counted standbys with their flush positions, for the "holding" lines.
std::string names(const std::vector<Walsender>& walsenders,
                  const std::vector<std::string>& standby_names) {
  std::string out;
  for (const auto& w : walsenders) {
    if (not_counted(w, standby_names)) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {} flushed {}", w.name(), w.state, format_lsn(*w.flush_lsn));
  }
  return out.empty() ? "none connected" : out;
}

std::vector<RowRef> refs_of(const std::vector<Row>& rows) {
  std::vector<RowRef> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back({r.id, r.message_id});
  return out;
}

}  // namespace

StandbyGate::StandbyGate(int required, std::vector<std::string> standby_names)
    : m_required(required), m_rounds(required, std::move(standby_names)) {}

void StandbyGate::check_privilege(pqxx::connection& db) const {
  if (!enabled()) return;
  pqxx::nontransaction tx(db);
  const auto r = pq::exec1(
      tx, "SELECT current_user::text, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')");
  if (!r[1].as<bool>()) {
    const auto user = r[0].as<std::string>();
    throw config_error(fmt::format(
        "relay.wait_for_standbys = {} needs the standbys' WAL positions in pg_stat_replication, "
        "which database user {} may not read. Hint: GRANT pg_monitor TO {} (as a superuser), "
        "or set relay.wait_for_standbys = 0",
        m_required, user, tx.quote_name(user)));
  }
}

std::vector<Walsender> StandbyGate::look(pqxx::connection& db) const {
  pqxx::nontransaction tx(db);
  const auto r = tx.exec(
      "SELECT coalesce(r.application_name, ''), coalesce(host(r.client_addr), 'local'), "
      "coalesce(r.state, ''), r.flush_lsn::text, EXISTS (SELECT 1 FROM pg_replication_slots s "
      "WHERE s.active_pid = r.pid AND s.slot_type = 'logical') FROM pg_stat_replication r "
      "ORDER BY 1, 2, r.pid");
  std::vector<Walsender> out;
  out.reserve(r.size());
  for (const auto& f : r) {
    Walsender w{.application_name = f[0].as<std::string>(),
                .client = f[1].as<std::string>(),
                .state = f[2].as<std::string>(),
                .flush_lsn = std::nullopt,
                .logical = f[4].as<bool>()};
    if (!f[3].is_null()) w.flush_lsn = parse_lsn(f[3].as<std::string>());
    out.push_back(std::move(w));
  }
  return out;
}

StandbyVerdict StandbyGate::wait(pqxx::connection& db, std::vector<Row>& rows,
                                 const std::stop_token& stop, clock::time_point until) {
  StandbyVerdict v;
  if (!enabled()) return v;
  const auto start = clock::now();
  StandbyRounds::Round round;
  {
    pqxx::nontransaction tx(db);
    const auto r = pq::exec1(
        tx,
        "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text "
        "END, pg_postmaster_start_time()::text");
    if (r[0].is_null()) {
      throw transient_error(
          "the database session is on a standby (recovery in progress): reconnecting to find "
          "the primary (use target_session_attrs=read-write in database.url)");
    }
    round =
        m_rounds.claimed(refs_of(rows), parse_lsn(r[0].as<std::string>()), r[1].as<std::string>());
  }
  v.lsn = format_lsn(round.target);
  auto pause = std::chrono::duration_cast<std::chrono::microseconds>(k_first_poll);
  for (;;) {
    v.walsenders = look(db);
    report_counted(v.walsenders);
    const auto count = m_rounds.check(round.target, v.walsenders);
    v.flushed = count.flushed;
    v.pass = count.pass;
    const bool absent = count.counted < static_cast<std::size_t>(m_required);
    const std::chrono::microseconds next = absent ? k_absent_poll : pause;
    if (v.pass || stop.stop_requested() || clock::now() + next >= until) break;
    std::this_thread::sleep_for(next);  // at most 100 ms: a stop is seen soon enough
    pause = std::min<std::chrono::microseconds>(pause * 2, k_max_poll);
  }
  v.waited = clock::now() - start;
  report(v, rows.size());
  if (!v.pass) return v;  // all the claimed rows are held
  m_rounds.published();
  if (round.refs.size() < rows.size()) {
    // Rows the held round did not have may have committed after its point: they wait in the
    // outbox for a round of their own.
    const std::set<RowRef> keep(round.refs.begin(), round.refs.end());
    std::erase_if(rows, [&](const Row& r) { return !keep.contains({r.id, r.message_id}); });
  }
  return v;
}

std::optional<StandbyVerdict> StandbyGate::nothing_claimed() {
  m_rounds.nothing_claimed();
  if (!m_holding) return std::nullopt;
  spdlog::info(
      "standbys: no rows left to hold after {:.1f} s (the held rows are gone: lost with a "
      "failed-over primary, or their shards moved to another relay)",
      std::chrono::duration<double>(clock::now() - m_hold_since).count());
  m_holding = false;
  m_waiting_on.clear();
  return StandbyVerdict{};
}

// One line when the walsenders the gate counts, or those it leaves out, change.
void StandbyGate::report_counted(const std::vector<Walsender>& walsenders) {
  std::string counted, ignored;
  for (const auto& w : walsenders) {
    const auto why = not_counted(w, m_rounds.standby_names());
    std::string& to = why ? ignored : counted;
    if (!to.empty()) to += ", ";
    to += fmt::format("{} ({}{}{})", w.name(), w.state.empty() ? "no state" : w.state,
                      why ? ": " : "", why.value_or(""));
  }
  const std::string line = fmt::format(
      "standbys: counting {} for relay.wait_for_standbys = {}{}; not counting {}",
      counted.empty() ? "none" : counted, m_required,
      m_rounds.standby_names().empty()
          ? std::string()
          : fmt::format(" (relay.standby_names = {})", fmt::join(m_rounds.standby_names(), ",")),
      ignored.empty() ? "any other" : ignored);
  if (line == m_counted) return;
  m_counted = line;
  spdlog::info("{}", line);
}

void StandbyGate::report(const StandbyVerdict& v, std::size_t rows) {
  const auto& standby_names = m_rounds.standby_names();
  if (v.pass) {
    if (m_holding) {
      spdlog::info(
          "standbys: {} of {} required standby(s) caught up ({}); publishing again after "
          "{:.1f} s",
          v.flushed, m_required, names(v.walsenders, standby_names),
          std::chrono::duration<double>(clock::now() - m_hold_since).count());
    }
    m_holding = false;
    m_waiting_on.clear();
    return;
  }
  const std::string seen = names(v.walsenders, standby_names);
  // The flush positions move while a standby catches up: the line names who is connected.
  std::string who;
  for (const auto& w : v.walsenders) {
    if (!not_counted(w, standby_names)) who += w.name() + " " + w.state + ";";
  }
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
