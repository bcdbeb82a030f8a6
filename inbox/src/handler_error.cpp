// Sorting a handler's exception, and the fix to print for a missing privilege or object.
#include "handler_error.hpp"

#include <array>

#include "txbox/error.hpp"

namespace txbox::inbox {
namespace {

using detail::failure_kind;

// The exception `e` wraps (std::throw_with_nested), or null.
std::exception_ptr nested_of(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::nested_exception& n) {
    return n.nested_ptr();
  } catch (...) {
    return nullptr;
  }
}

bool is_schema_error(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const schema_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

handler_error sort_one(const std::exception_ptr& e) noexcept {
  handler_error out;
  out.db = detail::classify(e);
  if (out.db.kind == failure_kind::db_transient) {
    out.verdict = handler_verdict::db_transient;
  } else if (out.db.kind == failure_kind::db_permanent &&
             (needs_operator(out.db.sqlstate) || is_schema_error(e))) {
    out.verdict = handler_verdict::db_held;
  }
  return out;
}

// "permission denied for <kind> <name>": the kind and the name, or empty ones.
struct denied_object {
  std::string kind, name;
};

denied_object parse_denied(std::string_view message) {
  constexpr std::string_view marker = "permission denied for ";
  const auto at = message.find(marker);
  if (at == std::string_view::npos) return {};
  std::string_view rest = message.substr(at + marker.size());
  // Longest first: "materialized view" before "view", "foreign table" before "table".
  static constexpr std::array<std::string_view, 10> kinds = {
      "materialized view", "foreign table", "procedure", "function", "relation",
      "sequence",          "routine",       "schema",    "table",    "view"};
  for (const auto kind : kinds) {
    if (!rest.starts_with(kind) || !rest.substr(kind.size()).starts_with(' ')) continue;
    rest.remove_prefix(kind.size() + 1);
    std::string name(rest.substr(0, rest.find(' ')));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      name = name.substr(1, name.size() - 2);
    }
    return {std::string(kind), name};
  }
  return {};
}

bool is_relation(std::string_view kind) {
  return kind == "table" || kind == "relation" || kind == "view" || kind == "materialized view" ||
         kind == "foreign table";
}

bool is_routine(std::string_view kind) {
  return kind == "function" || kind == "procedure" || kind == "routine";
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

std::string privilege_hint(std::string_view message, std::string_view role) {
  const auto [kind, name] = parse_denied(message);
  const std::string to = " TO " + sql_identifier(role);
  if ((is_relation(kind) && name == "outbox") || (is_routine(kind) && name == "enqueue")) {
    return "GRANT txbox_writer" + to +
           " (the handler writes txbox's outbox; txbox_writer may INSERT into it and run "
           "enqueue: docs/migrations.md)";
  }
  const std::string object = sql_identifier(name);
  if (is_relation(kind)) {
    return "GRANT the privilege the handler's statement needs (SELECT, INSERT, UPDATE or "
           "DELETE) ON " +
           object + to;
  }
  if (is_routine(kind)) return "GRANT EXECUTE ON " + upper(kind) + " " + object + to;
  if (kind == "sequence" || kind == "schema")
    return "GRANT USAGE ON " + upper(kind) + " " + object + to;
  return "grant " + std::string(role) + " the privilege the error names";
}

}  // namespace

handler_error sort_handler_error(const std::exception_ptr& e) noexcept {
  for (auto level = e; level; level = nested_of(level)) {
    auto sorted = sort_one(level);
    if (sorted.verdict != handler_verdict::message_failed) return sorted;
  }
  return {};
}

bool needs_operator(std::string_view s) {
  return s == "42501" || s == "42P01" || s == "42703" || s == "42883" || s == "42704" ||
         s == "3F000" || s == "3D000" || s.starts_with("28");
}

std::string held_hint(const detail::failure& f, std::string_view role) {
  if (f.sqlstate == "42501") return privilege_hint(f.message, role);
  if (f.sqlstate.empty()) return f.hint;  // txbox's schema_error: its text says what is missing
  return "the handler's statement names a table, column, function or schema that " +
         std::string(role) +
         " cannot find: apply the migrations it needs (txbox's: docs/migrations.md), or check "
         "the search_path";
}

std::string sql_identifier(std::string_view name) {
  bool plain = !name.empty() && !(name.front() >= '0' && name.front() <= '9');
  for (const char c : name) {
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$');
  }
  if (plain) return std::string(name);
  std::string out = "\"";
  for (const char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

}  // namespace txbox::inbox
