// The inbox store: every SQL statement of the consumer (dedupe rows, dead letters, offsets,
// requeue, retention), each value a bound parameter, table names from detail::schema_name.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "record.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::inbox {

/// A dead message marked for requeue, read back.
struct dead_row {
  std::int64_t id = 0;
  ReceivedMessage message;  ///< attempt = stored attempts + 1
};

class inbox_store {
 public:
  /// `consumer`: the inbox identity (ConsumerConfig::name).
  inbox_store(const detail::schema_name& schema, std::string consumer);

  /// Inserts the dedupe rows of `messages`; returns the ids that were new.
  [[nodiscard]] std::set<std::string> insert_new(
      pqxx::work& tx, const std::vector<const ReceivedMessage*>& messages) const;
  /// Records a message in inbox_dead (`error` already storable text).
  void insert_dead(pqxx::work& tx, const ReceivedMessage& m, const std::string& error,
                   int attempts) const;
  /// The stored next offset of each partition this consumer ever committed.
  [[nodiscard]] std::map<TopicPartition, std::int64_t> load_offsets(pqxx::connection& db) const;
  /// Stores next offsets, never moving one backwards.
  void upsert_offsets(pqxx::work& tx, const std::map<TopicPartition, std::int64_t>& next) const;

  /// Up to `limit` dead messages marked for requeue, locked (SKIP LOCKED) by `tx`.
  [[nodiscard]] std::vector<dead_row> requeued(pqxx::work& tx, int limit) const;
  /// A requeued message was processed: its dead row goes.
  void delete_dead(pqxx::work& tx, std::int64_t id) const;
  /// A requeued message failed again: unmarked, attempts + 1, the new error (made storable).
  void failed_again(pqxx::work& tx, std::int64_t id, const std::string& error) const;

  /// One short autocommit DELETE of at most `batch` inbox rows older than `retention`;
  /// returns the rows removed.
  std::uint64_t delete_expired(pqxx::connection& db, std::chrono::hours retention, int batch) const;

 private:
  std::string m_consumer;
  std::string m_inbox, m_dead, m_offsets;
};

}  // namespace txbox::inbox
