// The schema version (migrations/V<n>__*.sql applied up to n) each part of txbox needs: the one
// definition. relay.hpp and inbox.hpp include it, the internal database contract
// (txbox/detail/schema.hpp) and txboxctl refer to it.
#pragma once

namespace txbox {

/// The writers, txbox::Outbox (the outbox tables).
inline constexpr int outbox_schema_version = 1;
/// txbox::Relay and txbox-relay; they refuse to start on an older schema.
inline constexpr int relay_schema_version = 6;
/// The inbox consumer (txbox::inbox); it refuses to start on an older schema.
inline constexpr int inbox_schema_version = 3;
/// The SQL enqueue, txbox.enqueue() (for writers in other languages; no C++ part needs it).
inline constexpr int sql_enqueue_schema_version = 4;

}  // namespace txbox
