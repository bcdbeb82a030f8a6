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

}  // namespace txbox
