// Configuration mistakes among failed connections (see classify_connect_refusal in
// failure.hpp).
#include "txbox/detail/failure.hpp"

#include <fmt/format.h>

#include <array>

#include "txbox/conninfo.hpp"
#include "txbox/error.hpp"

namespace txbox::detail {
namespace {

// A refusal is recognised by `first` in the message, and `then` after it when not empty.
struct pattern {
  std::string_view first;
  std::string_view then;
  std::string_view sqlstate;
  std::string_view hint;
};

constexpr std::string_view k_hba_hint =
    "add a line for this host, user and database to the server's pg_hba.conf, or check the "
    "host, user and sslmode in database.url";
constexpr std::string_view k_option_hint =
    "fix that option in database.url (libpq's connection parameters: "
    "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS)";

// First match wins: the password line before the general authentication one.
constexpr std::array k_patterns = {
    pattern{"database \"", "\" does not exist", "3D000",
            "check the database name in database.url, or create the database"},
    pattern{"password authentication failed for user", "", "28P01",
            "check the user and password in database.url"},
    pattern{"authentication failed for user", "", "28000",
            "check the user in database.url and the authentication method the server's "
            "pg_hba.conf names for it"},
    pattern{"role \"", "\" does not exist", "28000",
            "check the user in database.url, or create the role"},
    pattern{"\" is not permitted to log in", "", "28000",
            "ALTER ROLE ... LOGIN, or check the user in database.url"},
    pattern{"no pg_hba.conf entry for", "", "28000", k_hba_hint},
    pattern{"pg_hba.conf rejects connection", "", "28000", k_hba_hint},
    pattern{"no password supplied", "", "",
            "the server asks for a password: put it in database.url or a passfile"},
    pattern{"permission denied for database", "", "42501",
            "GRANT CONNECT ON DATABASE to the user in database.url"},
    pattern{"unrecognized configuration parameter", "", "42704",
            "check the options parameter in database.url"},
    pattern{"invalid value for parameter", "", "22023",
            "check the options parameter in database.url"},
    pattern{"server does not support SSL, but SSL was required", "", "",
            "turn on ssl on the server, or change sslmode in database.url"},
    pattern{"root certificate file", "does not exist", "",
            "give sslrootcert in database.url, or change sslmode"},
    pattern{"certificate verify failed", "", "",
            "check sslrootcert in database.url: it must hold the CA that signed the server's "
            "certificate"},
    pattern{"server certificate for \"", "does not match host name", "",
            "connect by the name the server's certificate holds (host in database.url)"},
    // libpq's checks of the options, before it connects.
    pattern{"invalid ", " value: \"", "", k_option_hint},  // sslmode, gssencmode, ...
    pattern{"invalid integer value \"", "", "", k_option_hint},
    pattern{"invalid port number", "", "", k_option_hint},
    pattern{"invalid connection option", "", "", k_option_hint},
    pattern{"invalid SSL protocol version range", "", "", k_option_hint},
    pattern{"could not match ", " to ", "", k_option_hint},  // host names, hostaddr, ports
    pattern{"could not parse network address", "", "", k_option_hint},
    pattern{"invalid when SSL support is not compiled in", "", "", k_option_hint},
};

bool matches(std::string_view text, const pattern& p) {
  const auto at = text.find(p.first);
  if (at == std::string_view::npos) return false;
  return p.then.empty() || text.find(p.then, at + p.first.size()) != std::string_view::npos;
}

}  // namespace

std::optional<connect_refusal> classify_connect_refusal(std::string_view libpq_message) {
  for (const auto& p : k_patterns) {
    if (matches(libpq_message, p))
      return connect_refusal{std::string(p.sqlstate), std::string(p.hint)};
  }
  return std::nullopt;
}

void throw_connect_failure(std::string_view what, std::string_view conninfo,
                           std::string_view transient_hint) {
  const std::string head = fmt::format("cannot connect to the database ({}): {}",
                                       redact_conninfo(conninfo), libpq_error_text(what, conninfo));
  if (const auto refusal = classify_connect_refusal(what)) {
    throw config_error(fmt::format("{}. Hint: {}", head, refusal->hint));
  }
  if (transient_hint.empty()) throw transient_error(head);
  throw transient_error(fmt::format("{}. Hint: {}", head, transient_hint));
}

}  // namespace txbox::detail
