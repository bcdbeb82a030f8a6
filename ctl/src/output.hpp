// txboxctl: human tables and the rendering of stored bytes (payloads, keys, errors).
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace txbox::ctl {

/// A plain-text table with aligned columns. Example:
///   Table t({"shard", "pending"}, {true, true});
///   t.add({"3", "12"});
///   t.print(std::cout);
class Table {
 public:
  Table(std::vector<std::string> headers, std::vector<bool> right_aligned);
  /// Adds a row; each cell is made printable (control characters escaped) and cut to
  /// `max_cell` characters.
  void add(std::vector<std::string> cells);
  [[nodiscard]] bool empty() const { return m_rows.empty(); }
  void print(std::ostream& out, std::string_view indent = "  ") const;

  static constexpr std::size_t max_cell = 72;

 private:
  std::vector<std::string> m_headers;
  std::vector<bool> m_right;
  std::vector<std::vector<std::string>> m_rows;
};

/// Text safe to put on a terminal: valid UTF-8 with control characters (and invalid bytes)
/// shown as \xNN, \n, \t.
std::string printable(std::string_view s);

/// True if `s` is UTF-8 text without control characters other than \n, \r and \t.
bool is_text(std::string_view s) noexcept;

std::string base64(std::string_view bytes);

/// `xxd`-style dump: offset, 16 bytes in hex, the printable ASCII characters.
std::string hex_dump(std::string_view bytes);

/// Bytes for JSON output: {"<field>": text-or-base64, "<field>_encoding": "utf-8"|"base64",
/// "<field>_size": n}; null and no encoding when `bytes` is null.
void put_bytes(nlohmann::json& obj, const std::string& field, const std::string* bytes);

/// "850ms", "4.2s", "3m12s", "2h05m", "3d04h"; negative values get a leading '-'.
std::string duration(double seconds);

/// "0-15, 32, 40-47"
std::string ranges(const std::vector<int>& sorted);

/// nlohmann::json::dump that never throws on invalid UTF-8 (replaces it with U+FFFD).
std::string dump(const nlohmann::json& j, int indent = -1);

/// Writes `j` to stdout, indented, with a trailing newline.
void print_json(const nlohmann::json& j);

}  // namespace txbox::ctl
