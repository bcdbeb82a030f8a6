// The database contract (schema name, lock SQL).
#include "txbox/detail/schema.hpp"

#include <fmt/format.h>

#include "txbox/validate.hpp"

namespace txbox::detail {

schema_name::schema_name(std::string name, std::string_view key) : m_name(std::move(name)) {
  check_sql_identifier(m_name, key);
  m_quoted = "\"" + m_name + "\"";
}

std::string schema_name::table(std::string_view table) const {
  return fmt::format("{}.{}", m_quoted, table);
}

std::string key_lock_sql(std::string_view keys_sql) {
  return fmt::format(
      "SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock({}, h) FROM (SELECT DISTINCT "
      "hashtext(k) AS h FROM ({}) AS keys(k) WHERE k IS NOT NULL ORDER BY 1) hs) l",
      lock_namespace, keys_sql);
}

std::string outbox_insert_sql(std::string_view table, std::size_t rows, bool lock) {
  // A plain INSERT ... SELECT over VALUES: no CTE, join or sort on the way (each costs every
  // writer CPU, and the writers' commit rate is CPU-bound; see docs/benchmarks.md "writers").
  std::string values;
  std::string keys;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t p = r + 1;
    const char* sep = r == 0 ? "" : ", ";
    values += fmt::format("{}(${}::uuid, ${}::text, ${}::text, ${}::bytea, ${}::jsonb)", sep, p,
                          p + rows, p + 2 * rows, p + 3 * rows, p + 4 * rows);
    keys += fmt::format("{}(${}::text)", sep, p + 2 * rows);
  }
  std::string sql = fmt::format(
      "INSERT INTO {} (message_id, topic, key, payload, headers) SELECT * FROM (VALUES {}) AS "
      "v(message_id, topic, key, payload, headers) WHERE v.message_id IS NOT NULL",
      table, values);
  if (lock) sql += fmt::format(" AND ({}) >= 0", key_lock_sql("VALUES " + keys));
  return sql;
}

}  // namespace txbox::detail
