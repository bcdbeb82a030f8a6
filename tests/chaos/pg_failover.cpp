// The chaos driver's PostgreSQL failover (--pg-failover): servers.sh starts PostgreSQL as a
// primary with a synchronous streaming standby (scripts/lib/pg_ha.sh); everything connects
// through the multi-host conninfo; the pg_failover fault kills the primary, promotes the
// standby and, after its pause, attaches the killed node as the new standby. Synchronous
// replication keeps every commit a writer saw acknowledged; the relays' --wait-for-standbys 1
// keeps Kafka free of messages whose rows a promotion could lose.
#include <fmt/format.h>

#include <pqxx/pqxx>

#include "driver.hpp"

namespace chaos {

void Driver::pg_pair_setup() {
  if (m_o.pg_failover) m_servers->add_env({"TXBOX_TEST_PG_STANDBY=1", "TXBOX_TEST_PG_SYNC=1"});
}

void Driver::pg_pair_started() {
  if (!m_o.pg_failover) return;
  m_env["TXBOX_TEST_PG"] = m_env.at("TXBOX_TEST_PG_MULTI");
  m_env["TXBOX_TEST_PG_ADMIN"] = m_env.at("TXBOX_TEST_PG_MULTI_ADMIN");
  pqxx::connection admin(m_env.at("TXBOX_TEST_PG_ADMIN"));
  pqxx::nontransaction(admin).exec("GRANT pg_monitor TO txbox_owner");  // the relays' guard
}

bool Driver::pg_fail_over(const std::string& label, double down_s) {
  m_monitor->disconnect();
  if (!m_servers->run("pg-kill-primary") || !m_servers->run("pg-promote")) {
    m_infra_error = "the PostgreSQL failover failed; see " + m_servers->log();
    return false;
  }
  m_standby = false;
  m_events.push({Clock::now() + std::chrono::milliseconds(static_cast<long>(down_s * 1000)),
                 Action::attach_standby, 0});
  say(label + fmt::format("killed the PostgreSQL primary, promoted the standby (a new standby "
                          "in {:.1f} s)",
                          down_s));
  return true;
}

void Driver::pg_attach_standby() {
  if (!m_servers->run("pg-attach-standby")) {
    m_infra_error = "attaching a new standby failed; see " + m_servers->log();
    return;
  }
  m_standby = true;
  say("attached a new PostgreSQL standby");
}

}  // namespace chaos
