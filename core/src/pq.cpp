// The libpqxx 6.4 / 7.x seams that are not templates (see txbox/detail/pq.hpp).
#include "txbox/detail/pq.hpp"

#include <poll.h>

#include <cerrno>
#include <utility>

namespace txbox::pq {

void statement_registry::prepare(pqxx::transaction_base& tx, const std::string& name,
                                 const std::string& sql) {
#if TXBOX_PQXX7
  pqxx::connection& conn = tx.conn();
  const int pid = conn.backendpid();
  {
    const std::scoped_lock lock(m_mutex);
    const auto it = m_connections.find(&conn);
    if (it != m_connections.end() && it->second.backend_pid == pid &&
        it->second.names.contains(name)) {
      return;
    }
  }
  const bool exists =
      exec1(tx, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", name)[0].as<long>() >
      0;
  if (!exists) conn.prepare(name, sql);
  const std::scoped_lock lock(m_mutex);
  if (m_connections.size() >= m_max_connections && !m_connections.contains(&conn)) {
    m_connections.clear();
  }
  connection_entry& entry = m_connections[&conn];
  if (entry.backend_pid != pid) entry = connection_entry{pid, {}};
  entry.names.insert(name);
#else
  // 6.4 sends the PREPARE at the first execution on a connection (again after a reconnect);
  // defining it again with the same text is a no-op.
  tx.conn().prepare(name, sql);
#endif
}

#if TXBOX_PQXX7 && (PQXX_VERSION_MAJOR > 7 || PQXX_VERSION_MINOR >= 10)
// 7.10 replaced notification_receiver with connection::listen and a handler.
struct listener::impl {
  impl(pqxx::connection& c, std::string ch) : conn(c), channel(std::move(ch)) {
    conn.listen(channel, [this](const pqxx::notification&) { fired = true; });
  }
  ~impl() {
    try {
      conn.listen(channel);  // an empty handler stops listening
    } catch (...) {          // the connection is gone: so is the LISTEN
    }
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  pqxx::connection& conn;
  std::string channel;
  bool fired = false;
};
#else
struct listener::impl : pqxx::notification_receiver {
  impl(pqxx::connection& c, const std::string& ch) : pqxx::notification_receiver(c, ch), conn(c) {}
  void operator()(const std::string&, int) override { fired = true; }
  pqxx::connection& conn;
  bool fired = false;
};
#endif

listener::listener(pqxx::connection& conn, std::string channel)
    : m_impl(std::make_unique<impl>(conn, std::move(channel))) {}

listener::~listener() = default;

bool listener::take() {
  m_impl->fired = false;
  m_impl->conn.get_notifs();
  return m_impl->fired;
}

bool listener::wait(std::chrono::microseconds timeout) {
  // Not connection::await_notification: 7.x throws when a signal interrupts it ("Interrupted
  // system call"), and a relay stopped by SIGTERM while idle must stop cleanly.
  pollfd fd{};
  fd.fd = m_impl->conn.sock();
  fd.events = POLLIN;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  if (fd.fd >= 0 && ::poll(&fd, 1, static_cast<int>(ms)) < 0 && errno != EINTR) {
    throw pqxx::broken_connection("waiting for a notification failed: poll() errno " +
                                  std::to_string(errno));
  }
  return take();
}

}  // namespace txbox::pq
