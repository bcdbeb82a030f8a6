// Stored headers: any headers survive to_json -> from_json unchanged; any text given to
// from_json either decodes or throws txbox::error (never crashes, never another exception).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "headers_codec.hpp"
#include "txbox/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  // 1. The input as stored JSON.
  try {
    (void)txbox::detail::headers_from_json(input);
  } catch (const txbox::error&) {
  }
  // 2. The input cut into headers at 0xff bytes: name, value, name, value, ...
  std::vector<txbox::Header> headers;
  std::string part;
  std::vector<std::string> parts;
  for (char c : input) {
    if (static_cast<unsigned char>(c) == 0xff) {
      parts.push_back(part);
      part.clear();
    } else {
      part += c;
    }
  }
  parts.push_back(part);
  for (std::size_t i = 0; i + 1 < parts.size(); i += 2) headers.push_back({parts[i], parts[i + 1]});
  if (txbox::detail::headers_from_json(txbox::detail::headers_to_json(headers)) != headers) {
    std::abort();
  }
  return 0;
}
