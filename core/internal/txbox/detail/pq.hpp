// libpqxx 6.4 and 7.x (7.8 and later) from one source, with no deprecated call on either.
//
// txbox is built on Debian 12's libpqxx 6.4 and on Debian 13's 7.10; the APIs that differ
// between them are called only through this header:
//   pq::exec(tx, sql, args...)        a result (exec_params in 6.4, exec(sql, params) in 7)
//   pq::exec1 / pq::exec0             exactly one row / no rows, else pqxx::unexpected_rows
//   pq::exec_prepared(tx, name, ...)  a statement prepared with pq::statement_registry
//   pq::each(values)                  a range bound as consecutive parameters ($n, $n+1, ...)
//   pq::binary(bytes) / pq::bytes_of  a bytea parameter / a bytea field as std::string
//   pq::read_only_snapshot            a REPEATABLE READ, READ ONLY transaction
//   pq::listener                      LISTEN on a channel; wait() sleeps until a notification
//   pq::sql_error_of<E>(what, state)  a pqxx SQL error as a failed statement throws it (tests)
// An argument is any type both versions convert (integers, strings, std::optional, C strings,
// where nullptr is SQL NULL). Transactions may be temporaries: pq::exec1(pqxx::work(c), ...).
#pragma once

#include <pqxx/pqxx>
#include <pqxx/version>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#if PQXX_VERSION_MAJOR >= 7
#define TXBOX_PQXX7 1
#else
#define TXBOX_PQXX7 0
#endif

namespace txbox::pq {

/// The values of a range, bound as consecutive parameters of one statement.
template <typename Range>
struct each_of {
  const Range& values;
};
template <typename Range>
each_of<Range> each(const Range& values) {
  return {values};
}

/// A transaction, including a temporary one.
template <typename T>
concept transaction = std::derived_from<std::remove_cvref_t<T>, pqxx::transaction_base>;

#if TXBOX_PQXX7
/// A bytea parameter viewing the caller's bytes (valid until the statement has run).
using binary_param = std::basic_string_view<std::byte>;
inline binary_param binary(std::string_view bytes) {
  return {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()};
}
/// The bytes of a bytea field.
inline std::string bytes_of(const pqxx::field& f) {
  const auto b = f.as<std::basic_string<std::byte>>();
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
using read_only_snapshot =
    pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::write_policy::read_only>;

namespace detail {
template <typename T>
void bind(pqxx::params& p, const T& value) {
  p.append(value);
}
template <typename Range>
void bind(pqxx::params& p, const each_of<Range>& list) {
  p.append_multi(list.values);
}
template <typename... Args>
pqxx::params params(const Args&... args) {
  pqxx::params p;
  (bind(p, args), ...);
  return p;
}
}  // namespace detail

template <typename... Args>
pqxx::result exec(transaction auto&& tx, std::string_view sql, const Args&... args) {
  return tx.exec(sql, detail::params(args...));
}
template <typename... Args>
pqxx::result exec_prepared(transaction auto&& tx, const std::string& name, const Args&... args) {
  return tx.exec(pqxx::prepped{name}, detail::params(args...));
}
#else
using binary_param = pqxx::binarystring;
inline binary_param binary(std::string_view bytes) {
  return {bytes.data(), bytes.size()};
}
inline std::string bytes_of(const pqxx::field& f) {
  return pqxx::binarystring(f).str();
}
using read_only_snapshot = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

namespace detail {
template <typename T>
const T& bind(const T& value) {
  return value;
}
template <typename Range>
auto bind(const each_of<Range>& list) {
  return pqxx::prepare::make_dynamic_params(list.values);
}
}  // namespace detail

template <typename... Args>
pqxx::result exec(transaction auto&& tx, std::string_view sql, const Args&... args) {
  return tx.exec_params(std::string(sql), detail::bind(args)...);
}
template <typename... Args>
pqxx::result exec_prepared(transaction auto&& tx, const std::string& name, const Args&... args) {
  return tx.exec_prepared(name, detail::bind(args)...);
}
#endif

/// The one row a statement returns; throws pqxx::unexpected_rows for none or several.
template <typename... Args>
pqxx::row exec1(transaction auto&& tx, std::string_view sql, const Args&... args) {
  const pqxx::result r = exec(tx, sql, args...);
  if (r.size() != 1) {
    throw pqxx::unexpected_rows("expected 1 row, got " + std::to_string(r.size()) + ": " +
                                std::string(sql.substr(0, 200)));
  }
  return r[0];
}

/// Runs a statement that must return no rows; throws pqxx::unexpected_rows otherwise.
template <typename... Args>
pqxx::result exec0(transaction auto&& tx, std::string_view sql, const Args&... args) {
  pqxx::result r = exec(tx, sql, args...);
  if (!r.empty()) {
    throw pqxx::unexpected_rows("expected no rows, got " + std::to_string(r.size()) + ": " +
                                std::string(sql.substr(0, 200)));
  }
  return r;
}

/// A pqxx SQL error as a failed statement throws it (for tests): 6.4 constructs it from the
/// message alone, 7.x also from the statement and the SQLSTATE.
template <typename Error>
Error sql_error_of(const std::string& what, const char* sqlstate) {
#if TXBOX_PQXX7
  return Error(what, "", sqlstate);
#else
  (void)sqlstate;
  return Error(what);
#endif
}

/// Which named statements are prepared on which connection, so that each is prepared once per
/// connection with no query per execution. libpqxx 6.4 remembers its own (prepare() is lazy and
/// repeatable, and prepares again after a reconnect); 7.x prepares at once and fails if the name
/// exists, so the registry remembers, per connection, the statements it saw prepared there. A
/// connection is known by its address and its server process id: a new connection at a
/// reused address has another process id (the server forks a process per connection), and it
/// replaces the old entry. On a miss the server is asked (pg_prepared_statements) before
/// preparing, so a forgotten entry costs one query and never an error. At most
/// `max_connections` entries: past that the registry starts afresh. Thread-safe.
class statement_registry {
 public:
  explicit statement_registry(std::size_t max_connections = 1024)
      : m_max_connections(max_connections) {}

  /// Makes sure `name` is prepared as `sql` on the transaction's connection.
  void prepare(pqxx::transaction_base& tx, const std::string& name, const std::string& sql);

 private:
  struct connection_entry {
    int backend_pid = 0;
    std::set<std::string, std::less<>> names;
  };
  std::size_t m_max_connections;
  std::mutex m_mutex;
  std::unordered_map<const pqxx::connection*, connection_entry> m_connections;
};

/// LISTEN on one channel of a connection for as long as it lives (UNLISTEN at destruction).
class listener {
 public:
  listener(pqxx::connection& conn, std::string channel);
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// True if a notification on the channel arrived since the last call (reads what the
  /// connection has received; never blocks).
  bool take();
  /// Sleeps until the connection receives something or `timeout` passes; a signal ends the
  /// sleep early (the caller looks at its stop flag). Then as take().
  bool wait(std::chrono::microseconds timeout);

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace txbox::pq
