// TOML file, then TXBOX_* environment variables, then overrides, flattened to dotted keys.
#include "txbox/config_source.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "txbox/error.hpp"
#include "txbox/validate.hpp"

extern char** environ;

namespace txbox {
namespace {

std::string scalar_text(const toml::value& v, const std::string& key) {
  if (v.is_string()) return toml::get<std::string>(v);
  if (v.is_integer()) return std::to_string(v.as_integer());
  if (v.is_boolean()) return v.as_boolean() ? "true" : "false";
  if (v.is_floating()) return fmt::format("{}", v.as_floating());
  if (v.is_array()) {
    // A list of names (topics) becomes one comma-separated value, like its environment form.
    std::string out;
    for (const auto& e : v.as_array()) {
      if (!e.is_string()) {
        throw config_error(fmt::format("config key '{}' must be a list of strings", key));
      }
      out += (out.empty() ? "" : ",") + toml::get<std::string>(e);
    }
    return out;
  }
  throw config_error(fmt::format("config key '{}' must be a string, number or boolean", key));
}

void flatten(const toml::value& table, const std::string& prefix, config_map& out) {
  for (const auto& [k, v] : table.as_table()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    // [kafka] holds librdkafka's dotted keys, quoted or as nested tables.
    if (v.is_table()) {
      flatten(v, key, out);
    } else {
      out[key] = scalar_text(v, key);
    }
  }
}

void read_environment(const std::set<std::string>& sections, config_map& out) {
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    if (!entry.starts_with("TXBOX_") || entry.starts_with("TXBOX_TEST_")) continue;
    const auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string name = entry.substr(6, eq - 6);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto us = name.find('_');
    if (us == std::string::npos) continue;
    const std::string section = name.substr(0, us);
    std::string rest = name.substr(us + 1);
    if (!sections.contains(section)) continue;  // TXBOX_CACHE_DIR and other tooling variables
    if (section == "kafka") {
      for (char& c : rest) c = c == '_' ? '.' : c;
    }
    out[section + "." + rest] = entry.substr(eq + 1);
  }
}

}  // namespace

config_map read_config(const std::string& toml_path, const std::set<std::string>& sections,
                       const config_map& overrides) {
  config_map m;
  if (!toml_path.empty()) {
    std::ifstream file(toml_path, std::ios::binary);
    if (!file) {
      throw config_error(
          fmt::format("cannot read config file {}: {}", toml_path, std::strerror(errno)));
    }
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    // TOML is UTF-8 by definition; checking first also keeps bytes that are not from the
    // parser (Debian's toml11 reads past the end of an unterminated string holding them;
    // found by fuzz/config_fuzz.cpp).
    if (!is_valid_utf8(text)) {
      throw config_error(fmt::format(
          "config file {} is not UTF-8 text. Hint: TOML files must be UTF-8", toml_path));
    }
    text += '\n';
    try {
      std::istringstream in(text);
      flatten(toml::parse(in, toml_path), "", m);
    } catch (const config_error&) {
      throw;
    } catch (const std::exception& e) {
      throw config_error(fmt::format("cannot read config file {}: {}", toml_path, e.what()));
    }
  }
  read_environment(sections, m);
  for (const auto& [k, v] : overrides) m[k] = v;
  return m;
}

void check_config_keys(const config_map& m, const std::set<std::string>& known) {
  for (const auto& [k, v] : m) {
    if (!k.starts_with("kafka.") && !known.contains(k)) {
      throw config_error(
          fmt::format("unknown config key '{}'. Known keys: {}, and kafka.* (passed to librdkafka)",
                      k, fmt::join(known, ", ")));
    }
  }
}

long config_long(const config_map& m, const std::string& key, long def, long min, long max) {
  const auto it = m.find(key);
  if (it == m.end()) return def;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    throw config_error(
        fmt::format("config key '{}' = '{}' is invalid: expected a whole number from {} to {}", key,
                    it->second, min, max));
  }
  return v;
}

bool config_bool(const config_map& m, const std::string& key, bool def) {
  const auto it = m.find(key);
  if (it == m.end()) return def;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  throw config_error(
      fmt::format("config key '{}' = '{}' is invalid: expected true or false", key, it->second));
}

std::string config_string(const config_map& m, const std::string& key, std::string def) {
  const auto it = m.find(key);
  return it == m.end() ? def : it->second;
}

std::vector<std::string> config_list(const config_map& m, const std::string& key) {
  std::vector<std::string> out;
  const auto it = m.find(key);
  if (it == m.end()) return out;
  const std::string& text = it->second;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = std::min(text.find(',', start), text.size());
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

}  // namespace txbox
