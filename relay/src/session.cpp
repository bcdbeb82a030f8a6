// The relay's database session (see session.hpp).
#include "session.hpp"

#include <algorithm>
#include <pqxx/pqxx>
#include <thread>

#include "round.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/detail/schema_check.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

WakeOptions wake_options(const RelayConfig& cfg) {
  WakeOptions o;
  o.probe_max = cfg.probe_interval;
  o.probe_min = std::min(o.probe_min, cfg.probe_interval);
  o.poll_interval = cfg.poll_interval;
  return o;
}

// The sequence's position (is_called is false only before the first insert) and the
// transactions running now, in one trivial statement: no table or index is read.
std::string probe_sql(const RelayConfig& cfg) {
  return "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END, "
         "pg_current_snapshot()::text FROM " +
         detail::schema_name(cfg.schema).table("outbox_id_seq");
}

}  // namespace

Session::Session(const RelayConfig& cfg)
    : m_db(std::make_unique<pqxx::connection>(cfg.database_url)),
      m_probe_sql(probe_sql(cfg)),
      m_pacer(wake_options(cfg), clock::now()) {
  // A relay stalled inside a transaction (SIGSTOP, a pause past its lease) must not keep row
  // locks that block the new owner's delete, nor commit that delete late: the server ends
  // such a session, the transaction rolls back and the relay reconnects.
  pq::exec(pqxx::nontransaction(*m_db),
           "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
           std::to_string(std::max<long>(500, cfg.lease_ttl.count() / 2)));
  detail::check_schema_version(*m_db, cfg.schema, relay_schema_version, "txbox_relay",
                               "txbox-relay");
  if (cfg.listen_notify) {
    m_listener =
        std::make_unique<pq::listener>(*m_db, detail::schema_name(cfg.schema).notify_channel());
  }
  if (m_pacer.probing()) m_pacer.probed(clock::now(), probe());  // the sequence's start
}

Session::~Session() {
  m_listener.reset();  // before its connection
}

void Session::claimed(bool found_rows) {
  m_pacer.claimed(clock::now(), found_rows);
}

bool Session::notified() {
  return m_listener && m_listener->take();
}

ProbeReading Session::probe() {
  const auto row = pq::exec1(pqxx::nontransaction(*m_db), m_probe_sql);
  return {row[0].as<std::int64_t>(), DbSnapshot::parse(row[1].as<std::string>())};
}

bool Session::work_due() {
  if (notified()) return true;
  const auto now = clock::now();
  if (m_pacer.poll_due(now)) return true;
  if (m_pacer.probing() && now >= m_pacer.next_probe()) return m_pacer.probed(now, probe());
  return false;
}

bool Session::sleep_until(clock::time_point until) {
  const auto left = until - clock::now();
  if (left <= clock::duration::zero()) return false;
  if (m_listener) {
    return m_listener->wait(std::chrono::duration_cast<std::chrono::microseconds>(left));
  }
  std::this_thread::sleep_for(left);
  return false;
}

void Session::wait_for_work(const std::stop_token& stop, std::chrono::milliseconds max) {
  const auto until = clock::now() + max;
  while (!stop.stop_requested() && !work_due()) {
    const auto now = clock::now();
    if (now >= until) return;
    if (sleep_until(std::min({m_pacer.next_event(), until, now + 100ms}))) return;
  }
}

}  // namespace txbox::relay
