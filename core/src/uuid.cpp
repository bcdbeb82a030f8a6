#include "txbox/uuid.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "txbox/error.hpp"

namespace txbox {
namespace {

void fill_random(std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    const ssize_t got = ::getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw error(std::string("uuid_v7: getrandom failed: ") + std::strerror(errno));
    }
    out += got;
    n -= static_cast<std::size_t>(got);
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Last (ms << 12 | sub-ms fraction) handed out by this thread: keeps ids strictly increasing
// even when the clock does not advance between two calls or steps backwards.
thread_local std::uint64_t last_ticks = 0;

}  // namespace

std::string Uuid::str() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 0x0F]);
  }
  return out;
}

std::uint64_t Uuid::unix_ms() const {
  std::uint64_t ms = 0;
  for (std::size_t i = 0; i < 6; ++i) ms = (ms << 8) | bytes[i];
  return ms;
}

Uuid Uuid::parse(std::string_view text) {
  Uuid u;
  std::size_t b = 0;
  bool ok = text.size() == 36;
  for (std::size_t i = 0; ok && i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      ok = text[i] == '-';
      continue;
    }
    const int hi = hex_value(text[i]);
    const int lo = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
    ok = hi >= 0 && lo >= 0 && b < 16;
    if (ok) u.bytes[b++] = static_cast<std::uint8_t>(hi << 4 | lo);
    ++i;
  }
  if (!ok || b != 16) {
    throw error("not a UUID: '" + std::string(text.substr(0, 64)) +
                "' (expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  }
  return u;
}

Uuid uuid_v7_at(std::chrono::system_clock::time_point now) {
  using namespace std::chrono;
  const auto since = duration_cast<nanoseconds>(now.time_since_epoch()).count();
  const auto ns = static_cast<std::uint64_t>(since < 0 ? 0 : since);
  const std::uint64_t ms = ns / 1'000'000;
  // RFC 9562 method 3: 12 bits of sub-millisecond precision in rand_a.
  const std::uint64_t frac = ((ns % 1'000'000) << 12) / 1'000'000;
  std::uint64_t ticks = (ms << 12) | frac;
  if (ticks <= last_ticks) ticks = last_ticks + 1;
  last_ticks = ticks;

  Uuid u;
  fill_random(u.bytes.data() + 8, 8);
  const std::uint64_t t_ms = ticks >> 12;
  for (std::size_t i = 0; i < 6; ++i) {
    u.bytes[i] = static_cast<std::uint8_t>(t_ms >> (8 * (5 - i)));
  }
  u.bytes[6] = static_cast<std::uint8_t>(0x70 | ((ticks >> 8) & 0x0F));
  u.bytes[7] = static_cast<std::uint8_t>(ticks & 0xFF);
  u.bytes[8] = static_cast<std::uint8_t>(0x80 | (u.bytes[8] & 0x3F));
  return u;
}

Uuid uuid_v7() {
  return uuid_v7_at(std::chrono::system_clock::now());
}

}  // namespace txbox
