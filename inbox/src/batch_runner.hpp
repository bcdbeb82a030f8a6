// The batch runner: one batch in one PostgreSQL transaction (dedupe rows, handlers, dead
// letters, offsets), rerun without a failed partition's tail when a handler throws. Takes the
// messages and the known failures as values and returns what happened; no Kafka calls.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "inbox_store.hpp"
#include "partition_tracker.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox::inbox {

/// What the runner needs to know of the configuration.
struct batch_policy {
  int max_attempts = 5;
  FailurePolicy on_failure = FailurePolicy::dead_letter;
};

/// One handler run that threw (a handler failure: counted, retried or dead-lettered).
struct handler_failure {
  TopicPartition tp;
  std::int64_t offset = 0;
  std::string id;
  int attempts = 0;  ///< failed runs of this message so far, this one included
  std::string error;
  bool dead = false;  ///< dead-lettered in this batch (policy dead_letter, max_attempts)
};

struct batch_result {
  enum class status {
    committed,        ///< the transaction committed
    lost_assignment,  ///< rolled back: the group moved on, the new owner processes these
    db_failed,        ///< rolled back by a database failure (see `db`), or its outcome unknown
  };
  status outcome = status::committed;
  std::optional<detail::failure> db;          ///< set when outcome is db_failed
  std::string db_during = "running a batch";  ///< what failed, for the log line
  std::size_t processed = 0, duplicates = 0, dead = 0;
  std::map<TopicPartition, std::int64_t> next;        ///< committed next offset per partition
  std::map<TopicPartition, std::int64_t> retry_from;  ///< partitions held back at a failure
  std::vector<handler_failure> failures;              ///< every handler throw, in order
  std::vector<double> handler_seconds;                ///< run time of each handler that passed
};

/// Runs `messages` (fetch order) in one transaction on `db`. `prior`: failures already seen
/// per partition (a message's attempt number continues from there). `may_commit` is asked
/// right before the commit. A database error in txbox's statements, or one thrown by the
/// handler that is not its message's fault (transient: deadlock, serialization failure, lost
/// connection, ...; or a privilege or object missing, with held_hint's fix), rolls the batch
/// back and comes back as db_failed; it never counts as a handler attempt. Never throws.
batch_result run_batch(pqxx::connection& db, const inbox_store& store, const Handler& handler,
                       std::vector<ReceivedMessage> messages,
                       const std::map<TopicPartition, prior_failure>& prior,
                       const batch_policy& policy, const std::function<bool()>& may_commit);

}  // namespace txbox::inbox
