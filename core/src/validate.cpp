#include "txbox/validate.hpp"

#include <cstdint>
#include <string>

#include "txbox/error.hpp"

namespace txbox {

bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    const bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void check_topic_name(std::string_view topic) {
  if (topic.empty()) throw message_rejected("illegal Kafka topic name: it is empty");
  if (topic.size() > 249) {
    throw message_rejected("illegal Kafka topic name '" + std::string(topic.substr(0, 40)) +
                           "...': " + std::to_string(topic.size()) +
                           " characters, Kafka allows at most 249");
  }
  if (topic == "." || topic == "..") {
    throw message_rejected("illegal Kafka topic name '" + std::string(topic) +
                           "': '.' and '..' are reserved");
  }
  for (const char c : topic) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      throw message_rejected("illegal Kafka topic name '" + std::string(topic) +
                             "': only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
  }
}

void check_sql_identifier(std::string_view name, std::string_view what) {
  bool ok = !name.empty() && name.size() <= 63;
  for (std::size_t i = 0; ok && i < name.size(); ++i) {
    const char c = name[i];
    ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
  }
  if (!ok) {
    throw config_error(std::string(what) + " '" + std::string(name.substr(0, 80)) +
                       "' is not a plain SQL identifier. Hint: use 1-63 characters of "
                       "[a-z0-9_], starting with a letter or '_'");
  }
}

}  // namespace txbox
