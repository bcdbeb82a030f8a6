// txboxctl outbox dead … and inbox dead …: what both sides share (see dead_support.hpp).
#include "dead_support.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <pqxx/pqxx>
#include <set>

#include "output.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::ctl {

using json = nlohmann::json;

std::string id_array(const std::vector<std::int64_t>& ids) {
  return fmt::format("{{{}}}", fmt::join(ids, ","));
}

std::string id_list(const std::vector<std::int64_t>& ids) {
  constexpr std::size_t k_shown = 20;
  std::vector<std::int64_t> head(ids.begin(), ids.begin() + std::min(ids.size(), k_shown));
  return fmt::format(
      "{}{}", fmt::join(head, ", "),
      ids.size() > k_shown ? fmt::format(", … ({} more)", ids.size() - k_shown) : std::string());
}

// Checks the schema version in its own statement, before the command's transaction.
void check_schema(Database& db, int needed, std::string_view command) {
  pqxx::nontransaction tx(*db.conn);
  require_version(read_schema_state(tx, db.schema), db.schema, needed, command);
}

std::optional<std::string> bytes_of(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return pq::bytes_of(f);
}

json headers_of(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return json::parse(f.as<std::string>(), nullptr, false);
}

// `name  value` lines for `show`.
void field(const std::string& name, const std::string& value) {
  std::cout << fmt::format("{:<12}{}\n", name, printable(value));
}

void print_headers(const json& headers) {
  if (headers.empty()) {
    field("headers", dump(headers));
    return;
  }
  std::cout << "headers\n";
  if (headers.is_array()) {
    for (const auto& h : headers) std::cout << "  " << printable(dump(h)) << '\n';
  } else {
    std::cout << "  " << printable(dump(headers)) << '\n';
  }
}

void print_bytes(const std::string& name, const std::optional<std::string>& bytes) {
  if (!bytes) {
    field(name, "(null)");
  } else if (bytes->empty()) {
    field(name, "(empty)");
  } else if (is_text(*bytes)) {
    std::cout << fmt::format("{} ({} bytes, UTF-8 text)\n", name, bytes->size()) << *bytes
              << (bytes->back() == '\n' ? "" : "\n");
  } else {
    std::cout << fmt::format("{} ({} bytes, binary)\n", name, bytes->size()) << hex_dump(*bytes);
  }
}

void print_total(std::size_t shown, std::int64_t total, const char* what) {
  if (total == 0) {
    std::cout << fmt::format("no {}\n", what);
  } else if (static_cast<std::int64_t>(shown) < total) {
    std::cout << fmt::format("{} of {} {} shown (oldest first); raise --limit for more\n", shown,
                             total, what);
  } else {
    std::cout << fmt::format("{} {}\n", total, what);
  }
}

std::vector<std::int64_t> sorted_unique(std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::vector<std::int64_t> absent(const std::vector<std::int64_t>& wanted,
                                 const std::vector<std::int64_t>& got) {
  const std::set<std::int64_t> have(got.begin(), got.end());
  std::vector<std::int64_t> out;
  for (auto id : wanted) {
    if (!have.contains(id)) out.push_back(id);
  }
  return out;
}

void print_requeued(const Options& o, const std::vector<std::int64_t>& ids, const char* from,
                    const char* to) {
  if (o.json) {
    print_json({{"requeued", ids.size()}, {"ids", ids}});
  } else if (ids.empty()) {
    std::cout << fmt::format("nothing to requeue in {}\n", from);
  } else {
    std::cout << fmt::format("requeued {} message(s) from {} {}: id {}\n", ids.size(), from, to,
                             id_list(ids));
  }
}

}  // namespace txbox::ctl
