// Keeps a daemon's log to one line per state change when a library repeats itself (librdkafka
// logs every failed reconnect): a line that only differs from a recent one in its numbers is
// let through once per window, and the next one says how many were held back.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace txbox::detail {

class LogThrottle {
 public:
  using clock = std::chrono::steady_clock;

  explicit LogThrottle(std::chrono::seconds window = std::chrono::seconds(60)) : m_window(window) {}

  /// The line to log for `text` now (with " (N similar lines held back)" appended when some
  /// were), or nullopt to drop it. Thread-safe: librdkafka logs from its own threads.
  std::optional<std::string> admit(std::string_view text, clock::time_point now = clock::now()) {
    const std::lock_guard lock(m_mutex);
    if (m_seen.size() > 1000) m_seen.clear();  // bounded: distinct lines are few in practice
    auto [it, fresh] = m_seen.try_emplace(shape(text), Seen{now, 0});
    if (fresh) return std::string(text);
    if (now - it->second.last < m_window) {
      ++it->second.held;
      return std::nullopt;
    }
    std::string line(text);
    if (it->second.held > 0) {
      line += " (" + std::to_string(it->second.held) + " similar line(s) held back)";
    }
    it->second = Seen{now, 0};
    return line;
  }

 private:
  struct Seen {
    clock::time_point last;
    std::size_t held;
  };

  // The text with every run of digits replaced by '#': "after 14ms" and "after 3ms" match.
  static std::string shape(std::string_view text) {
    std::string out;
    bool digits = false;
    for (char c : text) {
      const bool d = c >= '0' && c <= '9';
      if (!d) {
        out += c;
      } else if (!digits) {
        out += '#';
      }
      digits = d;
    }
    return out;
  }

  std::chrono::seconds m_window;
  std::mutex m_mutex;
  std::map<std::string, Seen> m_seen;
};

}  // namespace txbox::detail
