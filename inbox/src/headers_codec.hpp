// Kafka headers <-> the JSON stored in inbox_dead.headers. Internal to txbox::inbox.
#pragma once

#include <string>
#include <vector>

#include "txbox/message.hpp"

namespace txbox::detail {

/// JSON array of [name, value] pairs; a pair with bytes that are not UTF-8 is stored as
/// [hex(name), hex(value), "hex"], so any header survives the round trip.
std::string headers_to_json(const std::vector<Header>& headers);

/// The inverse of headers_to_json. Throws txbox::error on malformed input.
std::vector<Header> headers_from_json(const std::string& text);

}  // namespace txbox::detail
