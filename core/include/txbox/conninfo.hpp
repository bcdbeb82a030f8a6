// Connection strings made safe to print.
#pragma once

#include <string>
#include <string_view>

namespace txbox {

/// Returns `conninfo` (libpq URI or keyword=value form) with every password replaced by
/// "***", so it can be logged or put into an exception message.
std::string redact_conninfo(std::string_view conninfo);

/// True if a configuration key names a secret (password, secret, token, sasl.*, ssl.key.*)
/// whose value must never be printed.
bool is_secret_key(std::string_view key) noexcept;

/// Throws config_error naming `setting` (e.g. "database.url") if libpq cannot parse
/// `conninfo`; the message gives libpq's reason with every password hidden.
void check_conninfo(std::string_view conninfo, std::string_view setting);

/// A libpq error message fit for one log line: newlines joined, the trailing period and
/// newline dropped, and `conninfo` or any password in it, if quoted, hidden.
std::string libpq_error_text(std::string_view message, std::string_view conninfo);

}  // namespace txbox
