// The relay's database session (see session.hpp).
#include "session.hpp"

#include <algorithm>
#include <pqxx/pqxx>
#include <thread>

#include "round.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/detail/schema_check.hpp"

namespace txbox::relay {

class Session::notify_flag : public pqxx::notification_receiver {
 public:
  notify_flag(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string&, int) override { fired = true; }
  bool fired = false;
};

Session::Session(const RelayConfig& cfg)
    : m_db(std::make_unique<pqxx::connection>(cfg.database_url)) {
  // A relay stalled inside a transaction (SIGSTOP, a pause past its lease) must not keep row
  // locks that block the new owner's delete, nor commit that delete late: the server ends
  // such a session, the transaction rolls back and the relay reconnects.
  pqxx::nontransaction(*m_db).exec_params(
      "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
      std::to_string(std::max<long>(500, cfg.lease_ttl.count() / 2)));
  detail::check_schema_version(*m_db, cfg.schema, relay_schema_version, "txbox_relay",
                               "txbox-relay");
  if (cfg.listen_notify) {
    m_listener =
        std::make_unique<notify_flag>(*m_db, detail::schema_name(cfg.schema).notify_channel());
  }
}

Session::~Session() {
  m_listener.reset();  // before its connection
}

bool Session::notified() {
  if (!m_listener) return false;
  m_listener->fired = false;
  m_db->get_notifs();
  return m_listener->fired;
}

void Session::wait_for_work(const std::stop_token& stop, std::chrono::milliseconds max) {
  using namespace std::chrono_literals;
  const auto until = clock::now() + max;
  while (!stop.stop_requested() && clock::now() < until) {
    const auto left = std::min<clock::duration>(until - clock::now(), 100ms);
    if (m_listener) {
      m_listener->fired = false;
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(left).count();
      m_db->await_notification(us / 1'000'000, us % 1'000'000);
      if (m_listener->fired) return;
    } else {
      std::this_thread::sleep_for(left);
    }
  }
}

}  // namespace txbox::relay
