// The relay's metrics in the Prometheus text exposition format (0.0.4): a pure function of a
// RelayStats value, unit-tested against a golden text. Internal to the relay.
#pragma once

#include <string>

#include "txbox/relay.hpp"

namespace txbox::relay {

/// Prometheus text exposition of `st` (what /metrics serves).
std::string metrics_text(const RelayStats& st);

}  // namespace txbox::relay
