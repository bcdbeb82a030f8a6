// Settings from a TOML file, TXBOX_* environment variables and flags, as flat dotted keys.
// Shared by txbox-relay and txbox::inbox so both read config the same way.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace txbox {

/// Flat settings: "database.url" -> "postgresql://...", "kafka.bootstrap.servers" -> ...
using config_map = std::map<std::string, std::string>;

/// Reads `toml_path` (empty: no file) as dotted keys, then the environment variables
/// TXBOX_<SECTION>_<NAME> of the given sections (TXBOX_DATABASE_URL -> database.url;
/// TXBOX_KAFKA_SASL_PASSWORD -> kafka.sasl.password), then `overrides`. Later sources win.
/// Throws config_error when the file cannot be read or parsed.
config_map read_config(const std::string& toml_path, const std::set<std::string>& sections,
                       const config_map& overrides);

/// Throws config_error for a key that is neither in `known` nor under "kafka.".
void check_config_keys(const config_map& m, const std::set<std::string>& known);

/// The value of `key` as a whole number in [min, max], or `def` when absent; throws
/// config_error naming the key otherwise.
long config_long(const config_map& m, const std::string& key, long def, long min, long max);

/// The value of `key` as true/false/1/0, or `def` when absent; throws config_error otherwise.
bool config_bool(const config_map& m, const std::string& key, bool def);

/// The value of `key`, or `def` when absent.
std::string config_string(const config_map& m, const std::string& key, std::string def);

/// The comma-separated items of `key` (a TOML list arrives in that form), trimmed, empty
/// items dropped; empty when absent.
std::vector<std::string> config_list(const config_map& m, const std::string& key);

}  // namespace txbox
