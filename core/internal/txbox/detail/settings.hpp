// A component's settings as one table (key, member, range, default, doc) that drives loading
// from a config_map, validating a struct built in code, describing it and the docs' table.
// Internal (not installed). Example:
//   const std::vector<setting<RelayConfig>> table = {
//       number<RelayConfig>("relay.batch_size", &RelayConfig::batch_size, 1, 10'000, "rows ..."),
//   };
//   load_settings(table, m, c);       // each key through config_long/config_bool/...
//   check_setting_ranges(table, c);   // "relay.batch_size = -1 is out of range: expected 1..10000"
#pragma once

#include <chrono>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "txbox/config_source.hpp"

namespace txbox::detail {

/// How a setting's text is read and shown.
enum class setting_kind { text, number, flag, list, choice };

/// One row of a settings table.
template <class Config>
struct setting {
  std::string key;  ///< dotted config key, e.g. "relay.batch_size"
  setting_kind kind = setting_kind::text;
  std::string doc;                   ///< one line for the docs' table
  long min = 0;                      ///< number: smallest allowed value
  long max = 0;                      ///< number: largest allowed value
  std::vector<std::string> choices;  ///< choice: the allowed words
  /// Stores the value of text already checked for the kind (a number in range, a listed word).
  std::function<void(Config&, const std::string&)> set;
  /// The value as printed by describe (secrets hidden) and as the docs' default.
  std::function<std::string(const Config&)> show;
  /// number: the current value (for the range check of a struct built in code).
  std::function<long(const Config&)> value;
};

/// "TXBOX_RELAY_BATCH_SIZE" for "relay.batch_size" (what read_config maps back).
[[nodiscard]] std::string env_name(const std::string& key);

/// Throws config_error "<key> = <value> is out of range: expected <min>..<max>".
[[noreturn]] void throw_out_of_range(const std::string& key, long value, long min, long max);

/// Throws config_error "<key> = '<text>' is invalid: expected a or b" unless `text` is one of
/// `choices`.
void check_choice(const std::string& key, const std::string& text,
                  const std::vector<std::string>& choices);

/// Text shown for a value: `empty` when the value is empty, else the value.
[[nodiscard]] inline std::string or_when_empty(const std::string& v, const char* empty) {
  return v.empty() ? empty : v;
}

/// A conninfo with its password hidden (redact_conninfo), for describe.
[[nodiscard]] std::string redacted_conninfo(const std::string& conninfo);

namespace settings_impl {

template <class T>
struct is_duration : std::false_type {};
template <class R, class P>
struct is_duration<std::chrono::duration<R, P>> : std::true_type {};

template <class T>
long to_long(const T& v) {
  if constexpr (is_duration<T>::value) {
    return static_cast<long>(v.count());
  } else if constexpr (std::is_unsigned_v<T>) {
    // Beyond long: shown as the largest long, which is above every maximum.
    return v > static_cast<T>(std::numeric_limits<long>::max()) ? std::numeric_limits<long>::max()
                                                                : static_cast<long>(v);
  } else {
    return static_cast<long>(v);
  }
}

template <class T>
T from_long(long v) {
  if constexpr (is_duration<T>::value) {
    return T(static_cast<typename T::rep>(v));
  } else {
    return static_cast<T>(v);
  }
}

}  // namespace settings_impl

/// A whole number in [min, max]: an integer member or a std::chrono duration (its count).
template <class Config, class T>
setting<Config> number(std::string key, T Config::*member, long min, long max, std::string doc) {
  setting<Config> s;
  s.key = std::move(key);
  s.kind = setting_kind::number;
  s.doc = std::move(doc);
  s.min = min;
  s.max = max;
  s.set = [member](Config& c, const std::string& text) {
    c.*member = settings_impl::from_long<T>(std::stol(text));
  };
  s.value = [member](const Config& c) { return settings_impl::to_long(c.*member); };
  s.show = [member](const Config& c) { return std::to_string(settings_impl::to_long(c.*member)); };
  return s;
}

/// A string member; `display` turns the value into what describe prints (e.g. redacted).
template <class Config>
setting<Config> text(std::string key, std::string Config::*member, std::string doc,
                     std::function<std::string(const std::string&)> display = {}) {
  setting<Config> s;
  s.key = std::move(key);
  s.kind = setting_kind::text;
  s.doc = std::move(doc);
  s.set = [member](Config& c, const std::string& text) { c.*member = text; };
  s.show = [member, display = std::move(display)](const Config& c) {
    return display ? display(c.*member) : c.*member;
  };
  return s;
}

/// true/false (also 1/0).
template <class Config>
setting<Config> flag(std::string key, bool Config::*member, std::string doc) {
  setting<Config> s;
  s.key = std::move(key);
  s.kind = setting_kind::flag;
  s.doc = std::move(doc);
  s.set = [member](Config& c, const std::string& text) {
    c.*member = text == "true" || text == "1";
  };
  s.show = [member](const Config& c) { return std::string(c.*member ? "true" : "false"); };
  return s;
}

/// A list of names: a TOML array or comma-separated text.
template <class Config>
setting<Config> list(std::string key, std::vector<std::string> Config::*member, std::string doc) {
  setting<Config> s;
  s.key = std::move(key);
  s.kind = setting_kind::list;
  s.doc = std::move(doc);
  s.set = [member, k = s.key](Config& c, const std::string& text) {
    c.*member = config_list({{k, text}}, k);
  };
  s.show = [member](const Config& c) {
    std::string out = "[";
    for (const auto& item : c.*member) out += (out.size() > 1 ? ", " : "") + item;
    return out + "]";
  };
  return s;
}

/// One of a few words, mapped to and from the member by `set` and `show`.
template <class Config>
setting<Config> choice(std::string key, std::vector<std::string> choices,
                       std::function<void(Config&, const std::string&)> set,
                       std::function<std::string(const Config&)> show, std::string doc) {
  setting<Config> s;
  s.key = std::move(key);
  s.kind = setting_kind::choice;
  s.doc = std::move(doc);
  s.choices = std::move(choices);
  s.set = std::move(set);
  s.show = std::move(show);
  return s;
}

/// database.url (shown redacted) and database.schema, the rows the relay and the consumer
/// share, followed by `rows`.
template <class Config>
std::vector<setting<Config>> with_database_settings(std::vector<setting<Config>> rows) {
  std::vector<setting<Config>> t = {
      text<Config>("database.url", &Config::database_url,
                   "libpq URI or keyword=value conninfo (required); printed with the password "
                   "hidden",
                   redacted_conninfo),
      text<Config>("database.schema", &Config::schema, "schema holding the txbox tables")};
  t.insert(t.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
  return t;
}

/// The kafka.* keys of `m` without their prefix (passed through to librdkafka).
[[nodiscard]] std::map<std::string, std::string> kafka_settings(const config_map& m);

/// "kafka.<key> = <value>\n" per property, secrets shown as "***".
[[nodiscard]] std::string describe_kafka(const std::map<std::string, std::string>& kafka);

/// The table's keys (for check_config_keys).
template <class Config>
std::set<std::string> setting_keys(const std::vector<setting<Config>>& table) {
  std::set<std::string> keys;
  for (const auto& s : table) keys.insert(s.key);
  return keys;
}

/// Stores every key of `m` the table has into `c`; keys absent from `m` keep their value.
/// Throws config_error naming the key for text that is not of the setting's kind or range.
template <class Config>
void load_settings(const std::vector<setting<Config>>& table, const config_map& m, Config& c) {
  for (const auto& s : table) {
    const auto it = m.find(s.key);
    if (it == m.end()) continue;
    switch (s.kind) {
      case setting_kind::number:
        s.set(c, std::to_string(config_long(m, s.key, 0, s.min, s.max)));
        break;
      case setting_kind::flag:
        s.set(c, config_bool(m, s.key, false) ? "true" : "false");
        break;
      case setting_kind::choice:
        check_choice(s.key, it->second, s.choices);
        s.set(c, it->second);
        break;
      case setting_kind::text:
      case setting_kind::list:
        s.set(c, it->second);
        break;
    }
  }
}

/// Throws config_error for the first number outside its range, naming the key, the value and
/// the range: the same limits as the loader, for a struct built in code.
template <class Config>
void check_setting_ranges(const std::vector<setting<Config>>& table, const Config& c) {
  for (const auto& s : table) {
    if (s.kind != setting_kind::number) continue;
    const long v = s.value(c);
    if (v < s.min || v > s.max) throw_out_of_range(s.key, v, s.min, s.max);
  }
}

/// "key = value\n" per setting, in table order, as `show` prints them.
template <class Config>
std::string describe_settings(const std::vector<setting<Config>>& table, const Config& c) {
  std::string out;
  for (const auto& s : table) out += s.key + " = " + s.show(c) + "\n";
  return out;
}

/// The allowed values of a setting as the docs print them ("1..10000", "earliest \\| latest").
template <class Config>
std::string allowed_text(const setting<Config>& s) {
  switch (s.kind) {
    case setting_kind::number:
      return std::to_string(s.min) + ".." + std::to_string(s.max);
    case setting_kind::flag:
      return "true \\| false";  // a markdown table cell: the bar escaped
    case setting_kind::choice: {
      std::string out;
      for (const auto& w : s.choices) out += (out.empty() ? "" : " \\| ") + w;
      return out;
    }
    case setting_kind::list:
      return "list of names";
    case setting_kind::text:
      break;
  }
  return "text";
}

/// A markdown table of the settings: key, environment variable, default (of a
/// default-constructed Config), allowed values, description.
template <class Config>
std::string settings_markdown(const std::vector<setting<Config>>& table) {
  const Config defaults{};
  std::string out = "| key | environment | default | allowed | meaning |\n|---|---|---|---|---|\n";
  for (const auto& s : table) {
    const std::string def = s.show(defaults);
    out += "| `" + s.key + "` | `" + env_name(s.key) + "` | " +
           (def.empty() ? std::string("—") : "`" + def + "`") + " | " + allowed_text(s) + " | " +
           s.doc + " |\n";
  }
  return out;
}

}  // namespace txbox::detail
