// The non-template pieces of the settings tables (txbox/detail/settings.hpp).
#include "txbox/detail/settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "txbox/conninfo.hpp"
#include "txbox/error.hpp"

namespace txbox::detail {

std::string env_name(const std::string& key) {
  std::string out = "TXBOX_";
  for (const char c : key) {
    out += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

void throw_out_of_range(const std::string& key, long value, long min, long max) {
  throw config_error(fmt::format("{} = {} is out of range: expected {}..{}", key, value, min, max));
}

void check_choice(const std::string& key, const std::string& text,
                  const std::vector<std::string>& choices) {
  if (std::find(choices.begin(), choices.end(), text) != choices.end()) return;
  std::string expected;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) expected += i + 1 == choices.size() ? " or " : ", ";
    expected += choices[i];
  }
  throw config_error(fmt::format("{} = '{}' is invalid: expected {}", key, text, expected));
}

std::string redacted_conninfo(const std::string& conninfo) {
  return redact_conninfo(conninfo);
}

std::map<std::string, std::string> kafka_settings(const config_map& m) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : m) {
    if (k.starts_with("kafka.")) out[k.substr(6)] = v;
  }
  return out;
}

std::string describe_kafka(const std::map<std::string, std::string>& kafka) {
  std::string out;
  for (const auto& [k, v] : kafka) {
    out += fmt::format("kafka.{} = {}\n", k, is_secret_key(k) ? "***" : v);
  }
  return out;
}

}  // namespace txbox::detail
