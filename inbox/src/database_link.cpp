// database_link: connection, backoff and readiness after a classified failure.
#include "database_link.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "txbox/conninfo.hpp"
#include "txbox/detail/backoff.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/detail/schema_check.hpp"

namespace txbox::inbox {

using namespace std::chrono_literals;

database_link::database_link(settings s) : m_s(std::move(s)) {}

void database_link::connect() {
  m_db = std::make_unique<pqxx::connection>(m_s.url);
  detail::check_schema_version(*m_db, m_s.schema, inbox_schema_version, "txbox_consumer",
                               "txbox::inbox");
  if (m_health == health::broken) return;  // ready again once a statement succeeds
  spdlog::info("inbox {}: database connected ({})", m_s.name, redact_conninfo(m_s.url));
  m_health = health::up;
}

void database_link::connect_now() {
  try {
    connect();
  } catch (const pqxx::broken_connection& e) {
    // A refusal an operator must fix (a database that does not exist, failed authentication,
    // an option value libpq refuses) is a config_error; anything else may pass: transient.
    detail::throw_connect_failure(e.what(), m_s.url,
                                  "check database.url and that PostgreSQL is running");
  }
}

void database_link::maintain(steady::time_point now) {
  if (m_db || now < m_until) return;
  try {
    connect();
    m_streak = 0;
  } catch (...) {
    m_db.reset();
    failed(detail::classify_current(), "connecting");
  }
}

bool database_link::usable(steady::time_point now) const {
  return m_db && now >= m_until;
}

void database_link::failed(const detail::failure& f, const char* what) {
  const bool permanent = !f.transient();
  if (f.reconnect) m_db.reset();
  const auto delay = permanent ? detail::backoff(m_streak, std::max(m_s.backoff_min, 1000ms),
                                                 std::max(m_s.backoff_max, 30'000ms), m_rng)
                               : detail::backoff(m_streak, m_s.backoff_min, m_s.backoff_max, m_rng);
  ++m_streak;
  m_until = steady::now() + delay;
  const std::string why = libpq_error_text(f.message, m_s.url);
  const std::string state = f.sqlstate.empty() ? "" : " (" + f.sqlstate + ")";
  if (permanent) {
    enter(
        health::broken,
        fmt::format(
            "{} error{} while {}: {}{}; not ready, consumption paused, retrying every {} s at most",
            detail::kind_name(f.kind), state, what, why, f.hint.empty() ? "" : ". Hint: " + f.hint,
            std::max(m_s.backoff_max, 30'000ms).count() / 1000));
  } else if (!m_db) {
    enter(health::down, fmt::format("database unreachable, consumption paused, retrying: {}", why));
  } else {
    enter(health::retrying,
          fmt::format("database transient error{} while {}, rolled back, retrying: {}", state, what,
                      why));
  }
}

void database_link::succeeded() {
  m_streak = 0;
  if (m_health != health::up && m_db) {
    spdlog::info("inbox {}: database statements succeed again", m_s.name);
    m_health = health::up;
  }
}

void database_link::quiet_round(steady::time_point now, std::chrono::milliseconds quiet) {
  // Counted from the end of the backoff: a batch held on a permanent error is fetched and run
  // again well within `quiet` after it, so the rounds before that retry prove nothing.
  if (m_health != health::up && now - m_until >= quiet) succeeded();
}

bool database_link::ready() const {
  return m_db && m_health != health::broken;
}

void database_link::enter(health h, const std::string& line) {
  if (h == m_health) return;
  m_health = h;
  if (h == health::retrying) {
    spdlog::info("inbox {}: {}", m_s.name, line);
  } else if (h == health::broken) {
    spdlog::error("inbox {}: {}", m_s.name, line);  // an operator must act
  } else {
    spdlog::warn("inbox {}: {}", m_s.name, line);
  }
}

}  // namespace txbox::inbox
