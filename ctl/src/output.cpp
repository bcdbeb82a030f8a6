#include "output.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iostream>

#include "txbox/validate.hpp"

namespace txbox::ctl {
namespace {

// Length of the UTF-8 sequence starting at s[i], or 0 if it is not a valid one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = 1;
  if (c >= 0x80) {
    if ((c & 0xE0) == 0xC0) {
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
    } else {
      return 0;
    }
  }
  if (i + len > s.size() || !is_valid_utf8(s.substr(i, len))) return 0;
  return len;
}

// Characters shown on a terminal (code points, not bytes).
std::size_t width(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string cut(std::string s, std::size_t max) {
  if (width(s) <= max) return s;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && ++chars == max) {
      s.resize(i);
      return s + "\u2026";
    }
  }
  return s;
}

}  // namespace

Table::Table(std::vector<std::string> headers, std::vector<bool> right_aligned)
    : m_headers(std::move(headers)), m_right(std::move(right_aligned)) {
  m_right.resize(m_headers.size(), false);
}

void Table::add(std::vector<std::string> cells) {
  cells.resize(m_headers.size());
  for (auto& c : cells) c = cut(printable(c), max_cell);
  m_rows.push_back(std::move(cells));
}

void Table::print(std::ostream& out, std::string_view indent) const {
  std::vector<std::size_t> w(m_headers.size());
  for (std::size_t i = 0; i < m_headers.size(); ++i) w[i] = width(m_headers[i]);
  for (const auto& row : m_rows) {
    for (std::size_t i = 0; i < row.size(); ++i) w[i] = std::max(w[i], width(row[i]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text(indent);
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(w[i] - width(cells[i]), ' ');
      const bool last = i + 1 == cells.size();
      if (m_right[i]) {
        text += pad + cells[i];
      } else {
        text += cells[i] + (last ? "" : pad);
      }
      if (!last) text += "  ";
    }
    out << text << '\n';
  };
  line(m_headers);
  for (const auto& row : m_rows) line(row);
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = utf8_sequence(s, i);
    // C0 controls, DEL and the C1 controls (U+0080..U+009F, e.g. the 8-bit CSI) are escaped.
    const bool c1 = len == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
    if (len == 0 || c < 0x20 || c == 0x7F || c1) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else {
        for (std::size_t k = 0; k < std::max<std::size_t>(len, 1); ++k) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[i + k]));
        }
      }
      i += std::max<std::size_t>(len, 1);
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

bool is_text(std::string_view s) noexcept {
  if (!is_valid_utf8(s)) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static constexpr char k_alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t n =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
        static_cast<unsigned char>(bytes[i + 2]);
    out += k_alphabet[(n >> 18) & 63];
    out += k_alphabet[(n >> 12) & 63];
    out += k_alphabet[(n >> 6) & 63];
    out += k_alphabet[n & 63];
  }
  if (i < bytes.size()) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) {
      n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    out += k_alphabet[(n >> 18) & 63];
    out += k_alphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? k_alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string hex_dump(std::string_view bytes) {
  std::string out;
  for (std::size_t off = 0; off < bytes.size(); off += 16) {
    std::string hex, ascii;
    for (std::size_t k = 0; k < 16; ++k) {
      if (off + k < bytes.size()) {
        const auto c = static_cast<unsigned char>(bytes[off + k]);
        hex += fmt::format("{:02x}", c);
        ascii += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : '.';
      } else {
        hex += "  ";
      }
      if (k % 2 == 1) hex += ' ';
    }
    out += fmt::format("{:08x}: {} {}\n", off, hex, ascii);
  }
  return out;
}

void put_bytes(nlohmann::json& obj, const std::string& field, const std::string* bytes) {
  if (!bytes) {
    obj[field] = nullptr;
    return;
  }
  if (is_valid_utf8(*bytes)) {
    obj[field] = *bytes;
    obj[field + "_encoding"] = "utf-8";
  } else {
    obj[field] = base64(*bytes);
    obj[field + "_encoding"] = "base64";
  }
  obj[field + "_size"] = bytes->size();
}

std::string duration(double seconds) {
  if (std::isnan(seconds)) return "-";
  if (seconds < 0) return "-" + duration(-seconds);
  if (seconds < 1) return fmt::format("{}ms", static_cast<long>(std::lround(seconds * 1000)));
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto s = static_cast<long>(seconds);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string ranges(const std::vector<int>& sorted) {
  std::string out;
  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += j == i ? std::to_string(sorted[i]) : fmt::format("{}-{}", sorted[i], sorted[j]);
    i = j + 1;
  }
  return out;
}

std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void print_json(const nlohmann::json& j) {
  std::cout << dump(j, 2) << '\n';
}

}  // namespace txbox::ctl
