// The schema-version check the relay and the consumer run at start. Internal, header-only.
#pragma once

#include <fmt/format.h>

#include <pqxx/pqxx>
#include <string>

#include "txbox/error.hpp"

namespace txbox::detail {

/// Throws schema_error naming the migration to apply when `schema` is missing, unreadable
/// by the user (`role`: the txbox role to grant) or below `required`.
inline void check_schema_version(pqxx::connection_base& db, const std::string& schema, int required,
                                 const std::string& role, const std::string& program) {
  pqxx::nontransaction tx(db);
  int version = 0;
  try {
    version = tx.exec("SELECT coalesce(max(version), 0) FROM " + tx.quote_name(schema) +
                      ".schema_version")[0][0]
                  .as<int>();
  } catch (const pqxx::undefined_table&) {
    throw schema_error(fmt::format(
        "schema '{}' has no txbox tables. Hint: apply migrations/V1__create_txbox_schema.sql "
        "and every later file (see docs/migrations.md), or set database.schema",
        schema));
  } catch (const pqxx::insufficient_privilege&) {
    throw schema_error(fmt::format(
        "the database user may not read {}.schema_version. Hint: GRANT {} TO the user of {}",
        schema, role, program));
  }
  if (version < required) {
    throw schema_error(fmt::format(
        "schema '{}' is at version {}, {} needs {}. Hint: apply migrations/V{}__*.sql{} "
        "(docs/migrations.md)",
        schema, version, program, required, version + 1,
        version + 1 < required ? " and the files after it" : ""));
  }
}

}  // namespace txbox::detail
