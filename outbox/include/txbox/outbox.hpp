// txbox::outbox: write messages into the outbox table inside the caller's transaction.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "txbox/error.hpp"
#include "txbox/message.hpp"
#include "txbox/uuid.hpp"

namespace pqxx {
class transaction_base;
}

namespace txbox {

/// Outbox settings. Plain struct with defaults; validated when an Outbox is constructed.
struct OutboxConfig {
  std::string schema = "txbox";               ///< Schema holding the outbox table.
  std::size_t max_payload_bytes = 1'048'576;  ///< Broker's default message.max.bytes.
  std::size_t max_headers = 64;               ///< Caller headers per message.
  std::string source = "txbox";               ///< CloudEvents ce_source of every message.
  /// Insert through prepared statements (for batches of up to Outbox::k_prepared_rows rows):
  /// the statement is parsed and planned once per connection instead of at every enqueue.
  /// Turn off behind a pooler that cannot keep prepared statements across transactions
  /// (PgBouncer in transaction or statement mode before 1.21, or with
  /// max_prepared_statements = 0), and when the application runs DISCARD ALL or
  /// DEALLOCATE ALL on the connection: libpqxx would still believe them prepared.
  bool prepare_statements = true;
};

/// Writes messages into `<schema>.outbox` as part of the caller's transaction: they are
/// published if and only if that transaction commits. Messages with the same key are
/// serialised (a transaction-scoped advisory lock on the key's hash), so their outbox order
/// is their commit order. Thread-safe; cheap to copy. Example:
///   txbox::Outbox outbox;                        // schema "txbox"
///   pqxx::work tx(conn);
///   tx.exec("INSERT INTO orders ...");
///   outbox.enqueue(tx, {.topic = "orders", .key = "order-42", .payload = body});
///   tx.commit();
class Outbox {
 public:
  /// Throws config_error if the schema name is not a plain identifier or a limit is zero.
  explicit Outbox(OutboxConfig config = {});

  /// Validates and inserts one message; returns its id (UUIDv7).
  /// Throws message_rejected (bad topic, payload too large, headers not UTF-8, reserved or
  /// too many headers) before touching the database, leaving the transaction usable;
  /// schema_error when the outbox table is missing; pqxx exceptions for database failures.
  Uuid enqueue(pqxx::transaction_base& tx, const Message& message) const;

  /// Validates all, then inserts all messages in one round trip, ids in the given order.
  /// Throws as enqueue(); if any message is rejected, none is inserted.
  std::vector<Uuid> enqueue(pqxx::transaction_base& tx, std::span<const Message> messages) const;

  [[nodiscard]] const OutboxConfig& config() const { return m_config; }

  /// Batches of up to this many rows use a prepared statement (named
  /// txbox_enqueue_<hash of the table>_<rows>): one per size up to 16 rows, then one per
  /// power of two up to 1024, padded with rows the statement skips (at most 22 per schema and
  /// connection, prepared when first used). Larger batches are parsed at every call.
  static constexpr std::size_t k_prepared_rows = 1024;

 private:
  struct statements;
  OutboxConfig m_config;
  std::string m_table;                             // quoted, schema-qualified outbox table
  std::shared_ptr<const statements> m_statements;  // null: prepare_statements is off
};

/// Inserts one message with the default OutboxConfig (schema "txbox"). Throws as
/// Outbox::enqueue.
Uuid enqueue(pqxx::transaction_base& tx, const Message& message);

/// Inserts many messages in one round trip with the default OutboxConfig.
std::vector<Uuid> enqueue(pqxx::transaction_base& tx, std::span<const Message> messages);

}  // namespace txbox
