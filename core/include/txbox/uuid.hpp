// UUIDs as txbox uses them: version 7 (RFC 9562), time-ordered message ids.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace txbox {

/// A 128-bit UUID. Compares bytewise, so UUIDv7 values compare in time order.
struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  /// Canonical lowercase text form, e.g. "0192f0c3-6b1e-7a3c-8d2e-0f1a2b3c4d5e".
  [[nodiscard]] std::string str() const;
  /// The version nibble (7 for ids made by uuid_v7()).
  [[nodiscard]] int version() const { return bytes[6] >> 4; }
  /// True when the variant bits are the RFC 9562 variant (0b10).
  [[nodiscard]] bool rfc_variant() const { return (bytes[8] & 0xC0) == 0x80; }
  /// Milliseconds since the Unix epoch stored in a UUIDv7.
  [[nodiscard]] std::uint64_t unix_ms() const;

  /// Parses the canonical 36-character form. Throws txbox::error on malformed text.
  static Uuid parse(std::string_view text);

  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

/// A new UUIDv7: 48-bit Unix milliseconds, 12 bits of sub-millisecond time, 62 random bits
/// from the kernel's CSPRNG (getrandom). Strictly increasing within one thread; fork-safe.
/// Throws txbox::error if the kernel cannot supply random bytes.
Uuid uuid_v7();

/// As uuid_v7(), with the time given (for tests).
Uuid uuid_v7_at(std::chrono::system_clock::time_point now);

}  // namespace txbox
