// Connection strings: redaction never crashes and never lets a password through; the input
// checks never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "txbox/conninfo.hpp"
#include "txbox/error.hpp"
#include "txbox/validate.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  (void)txbox::redact_conninfo(input);
  (void)txbox::is_valid_utf8(input);
  try {
    txbox::check_topic_name(input);
  } catch (const txbox::error&) {
  }
  try {
    txbox::check_sql_identifier(input, "fuzz");
  } catch (const txbox::error&) {
  }
  // A password planted in both forms never survives redaction, whatever surrounds it.
  const std::string secret = "Zq9fuzzSecret";
  if (input.find(secret) != std::string::npos) return 0;  // shown where it is not a password
  for (const std::string& planted :
       {input + " password=" + secret, "postgresql://u:" + secret + "@h/db?" + input}) {
    if (txbox::redact_conninfo(planted).find(secret) != std::string::npos) std::abort();
  }
  return 0;
}
