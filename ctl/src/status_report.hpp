// txboxctl status: the report as a value. read_status_report() gathers it from the database;
// the renderers (status_render.hpp) turn it into text or JSON without one.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <pqxx/transaction_base>
#include <string>
#include <vector>

#include "replication.hpp"

namespace txbox::ctl {

struct Database;
struct SchemaState;

// Pending rows are counted exactly up to this many (as the relay's backlog gauge), then
// estimated from PostgreSQL's statistics; above it each shard counts its first
// k_shard_sample rows only. So status reads a bounded number of rows however large the backlog.
inline constexpr std::int64_t k_exact_up_to = 100'000;
inline constexpr std::int64_t k_shard_sample = 1'000;

/// One shard with pending rows.
struct ShardBacklog {
  int shard = 0;
  std::int64_t pending = 0;   ///< exact, or the rows counted (k_shard_sample)
  std::int64_t retrying = 0;  ///< among those counted
  double oldest_age = 0;      ///< seconds, of the shard's head (its lowest id)
  bool exact = true;
};

/// The outbox's pending rows.
struct Backlog {
  std::vector<ShardBacklog> shards{};  ///< shards with pending rows, in order
  std::int64_t total = 0;
  std::int64_t retrying = 0;
  double oldest = std::nan("");  ///< seconds; NaN when nothing is pending
  bool exact = true;
};

/// A row of outbox_leases.
struct Lease {
  std::string owner{};    ///< empty: never owned or released
  double expires_in = 0;  ///< seconds; <= 0: expired (-1 when it never expires)
};

/// A row of outbox_relays.
struct RelaySeen {
  std::string name;
  std::string seen_at;  ///< RFC 3339 UTC
  double seen_age = 0;  ///< seconds
  bool live = false;    ///< seen within the lease TTL
};

/// outbox_dead grouped by topic.
struct OutboxDeadTopic {
  std::string topic;
  std::int64_t count = 0;
  std::string last_failed_at;  ///< RFC 3339 UTC
};

/// inbox_dead grouped by consumer.
struct InboxDeadConsumer {
  std::string consumer;
  std::int64_t count = 0;
  std::int64_t requeued = 0;  ///< 0 before migration V3
  std::string last_failed_at;
};

/// A row of inbox_offsets.
struct InboxOffset {
  std::string consumer;
  std::string topic;
  int partition = 0;
  std::int64_t next_offset = 0;
  std::string updated_at;  ///< RFC 3339 UTC
  double updated_age = 0;  ///< seconds
};

/// Everything `txboxctl status` shows, read at one moment.
struct StatusReport {
  std::string dbname;
  std::string schema;
  int schema_version = 0;
  std::string at;         ///< the server's now(), RFC 3339 UTC
  long lease_ttl_ms = 0;  ///< what "live" means for relays (--lease-ttl-ms)
  Replication replication{};
  Backlog backlog{};
  std::map<int, Lease> leases{};                ///< by shard
  std::vector<RelaySeen> relays{};              ///< by name
  std::vector<OutboxDeadTopic> outbox_dead{};   ///< by topic
  std::vector<InboxDeadConsumer> inbox_dead{};  ///< by consumer
  std::vector<InboxOffset> inbox_offsets{};     ///< by consumer, topic, partition
};

/// Reads the report with `tx` (autocommit statements: none holds a snapshot across the others).
/// Needs migration V2 (outbox_relays), checked by the caller. Throws the database's errors.
StatusReport read_status_report(pqxx::transaction_base& tx, const Database& db,
                                const SchemaState& state, long lease_ttl_ms);

}  // namespace txbox::ctl
