// The consumer's settings table (key, member, range, default, doc): load, validate, describe
// and the docs' table (docs/inbox.md) come from it. Internal.
#pragma once

#include <string>
#include <vector>

#include "txbox/detail/settings.hpp"
#include "txbox/inbox.hpp"

namespace txbox::detail {

/// Every consumer.* and database.* key (kafka.* passes through to librdkafka).
const std::vector<setting<ConsumerConfig>>& consumer_settings();

/// The markdown table of consumer_settings(), as pasted into docs/inbox.md.
std::string consumer_settings_markdown();

/// "key = value" lines of a consumer config, secrets hidden.
std::string describe_consumer_config(const ConsumerConfig& config);

}  // namespace txbox::detail
