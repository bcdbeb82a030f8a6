// Kafka headers <-> the JSON stored in inbox_dead.headers.
#include "headers_codec.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "txbox/error.hpp"
#include "txbox/validate.hpp"

namespace txbox::detail {
namespace {

std::string to_hex(const std::string& bytes) {
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) hex += fmt::format("{:02x}", c);
  return hex;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2 != 0) throw error("stored header: odd-length hex '" + hex + "'");
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_digit(hex[i]);
    const int lo = hex_digit(hex[i + 1]);
    if (hi < 0 || lo < 0) throw error("stored header: invalid hex '" + hex + "'");
    bytes += static_cast<char>(hi * 16 + lo);
  }
  return bytes;
}

}  // namespace

std::string headers_to_json(const std::vector<Header>& headers) {
  auto arr = nlohmann::json::array();
  for (const auto& h : headers) {
    if (is_valid_utf8(h.name) && is_valid_utf8(h.value)) {
      arr.push_back({h.name, h.value});
    } else {
      arr.push_back({to_hex(h.name), to_hex(h.value), "hex"});
    }
  }
  return arr.dump();
}

std::vector<Header> headers_from_json(const std::string& text) {
  std::vector<Header> out;
  try {
    const auto arr = nlohmann::json::parse(text);
    if (!arr.is_array()) throw error("stored headers are not a JSON array");
    for (const auto& e : arr) {
      if (!e.is_array() || e.size() < 2 || e.size() > 3 || !e[0].is_string() || !e[1].is_string() ||
          (e.size() == 3 && e[2] != "hex")) {
        throw error("stored header is not [name, value] or [name, value, \"hex\"]: " + e.dump());
      }
      Header h{e[0].get<std::string>(), e[1].get<std::string>()};
      if (e.size() == 3) h = Header{from_hex(h.name), from_hex(h.value)};
      out.push_back(std::move(h));
    }
  } catch (const nlohmann::json::exception& e) {
    throw error(fmt::format("stored headers are not valid JSON: {}", e.what()));
  }
  return out;
}

}  // namespace txbox::detail
