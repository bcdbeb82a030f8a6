// The relay's settings table (key, member, range, default, doc): load, validate, describe
// and the docs' table (docs/operations.md) come from it. Internal.
#pragma once

#include <string>
#include <vector>

#include "txbox/detail/settings.hpp"
#include "txbox/relay.hpp"

namespace txbox::detail {

/// Every relay.*, database.* and http.* key (kafka.* passes through to librdkafka).
const std::vector<setting<RelayConfig>>& relay_settings();

/// The markdown table of relay_settings(), as pasted into docs/operations.md.
std::string relay_settings_markdown();

}  // namespace txbox::detail
