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

}  // namespace txbox::detail
