// The outbox as the relay sees it: every outbox SQL statement and the epoch fence. Claims a
// round under a lease view, settles a plan (fenced), reads the backlog gauges and the topics
// at the shards' heads. Internal to the relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <pqxx/connection>
#include <set>
#include <string>
#include <vector>

#include "round.hpp"
#include "settle_plan.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::relay {

/// Memory per message besides its payload, key and headers, counted against max_batch_bytes:
/// the claimed row (~200 B) and its copy in librdkafka with its headers (~700 B), as
/// measured with valgrind --tool=massif.
inline constexpr std::int64_t row_overhead = 1024;

/// What a settle changed (the fence may leave rows to a shard's new owner).
struct SettleCounts {
  std::size_t deleted = 0;
  std::size_t dead = 0;
  std::size_t retried = 0;
};

/// The backlog gauges.
struct Backlog {
  std::int64_t rows = 0;  ///< exact up to 100,000, PostgreSQL's estimate above
  double oldest_seconds = 0;
};

class OutboxStore {
 public:
  OutboxStore(detail::schema_name schema, std::string owner, int batch_size,
              std::size_t max_batch_bytes);

  /// The next round: per owned shard (still leased at this epoch) its pending head, up to
  /// batch_size rows, of each key the rows before its first one that waits for its retry
  /// time (a waiting row holds its key, not the other keys of its shard); over
  /// all shards at most max_batch_bytes (but at least one row). Ordered by shard, then id.
  /// Each call starts the byte budget at another shard, so a busy shard starves none.
  /// `budget`: the round's bytes at most (0: max_batch_bytes; the pipeline passes what the
  /// rows in flight leave of it).
  std::vector<Row> claim(pqxx::connection& db, const LeaseView& leases, std::size_t budget = 0);

  /// Applies `plan` in one transaction, fenced by the leases (a row of a shard taken over
  /// meanwhile is left alone). `retry_delay(attempts)` paces the retries (at most each row's
  /// `at_most`).
  SettleCounts settle(pqxx::connection& db, const LeaseView& leases, const SettlePlan& plan,
                      const std::function<std::chrono::milliseconds(int)>& retry_delay);

  /// exactly_once: deletes the rows a committed Kafka transaction published (id and message
  /// id must both match), fenced like settle. Returns how many it deleted.
  std::size_t delete_published(pqxx::connection& db, const LeaseView& leases,
                               const std::vector<std::int64_t>& ids,
                               const std::vector<std::string>& message_ids);

  /// The outbox's identity (migration V5); throws schema_error when it is missing.
  std::string identity(pqxx::connection& db);

  /// Counts up to 100,000 rows exactly, estimates above (a count would scan a large outbox).
  Backlog backlog(pqxx::connection& db);

  /// The topics of the first `per_shard` pending rows of every shard (index reads only).
  std::set<std::string> head_topics(pqxx::connection& db, int per_shard);

 private:
  detail::schema_name m_schema;
  std::string m_owner;
  int m_batch_size;
  std::size_t m_max_batch_bytes;
  int m_round = 0;  // rotates the shard the byte budget starts at
};

}  // namespace txbox::relay
