// Input checks shared by every part; each throws with what is wrong and how to fix it.
#pragma once

#include <string_view>

namespace txbox {

/// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, max U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// Throws message_rejected unless `topic` is a legal Kafka topic name
/// (1..249 characters of [a-zA-Z0-9._-], not "." or "..").
void check_topic_name(std::string_view topic);

/// Throws config_error unless `name` is a plain SQL identifier: [a-z_][a-z0-9_]*, at most
/// 63 bytes. `what` names the setting in the message (e.g. "outbox schema").
void check_sql_identifier(std::string_view name, std::string_view what);

}  // namespace txbox
