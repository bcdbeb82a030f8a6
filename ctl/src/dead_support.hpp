// txboxctl outbox dead … and inbox dead …: what both sides share (ids in SQL and in messages,
// the schema check, rendering a dead row's fields, requeue results).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ctl.hpp"

namespace pqxx {
class field;
}  // namespace pqxx

namespace txbox::ctl {

/// "{1,2,3}": a bigint[] parameter.
std::string id_array(const std::vector<std::int64_t>& ids);

/// "1, 2, 3" (the first 20, then "… (n more)"), for messages.
std::string id_list(const std::vector<std::int64_t>& ids);

/// Checks the schema version in its own statement, before the command's transaction. Throws
/// schema_error naming the migrations to apply.
void check_schema(Database& db, int needed, std::string_view command);

/// A bytea column's bytes; nullopt for NULL.
std::optional<std::string> bytes_of(const pqxx::field& f);

/// A jsonb column's headers (null for NULL, discarded when not JSON).
nlohmann::json headers_of(const pqxx::field& f);

/// `name  value` lines for `show`, on stdout.
void field(const std::string& name, const std::string& value);
void print_headers(const nlohmann::json& headers);
/// "(null)", "(empty)", UTF-8 text as it is, anything else as a hex dump.
void print_bytes(const std::string& name, const std::optional<std::string>& bytes);

/// "3 of 10 dead … shown (oldest first); raise --limit for more", "no …", "10 …".
void print_total(std::size_t shown, std::int64_t total, const char* what);

std::vector<std::int64_t> sorted_unique(std::vector<std::int64_t> ids);

/// The ids of `wanted` that are not in `got`.
std::vector<std::int64_t> absent(const std::vector<std::int64_t>& wanted,
                                 const std::vector<std::int64_t>& got);

/// What a requeue did: JSON or one line, on stdout.
void print_requeued(const Options& o, const std::vector<std::int64_t>& ids, const char* from,
                    const char* to);

}  // namespace txbox::ctl
