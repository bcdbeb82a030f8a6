// All inbox SQL.
#include "inbox_store.hpp"

#include <fmt/format.h>

#include "headers_codec.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::inbox {
namespace {

// Parameters per row of the dedupe INSERT; PostgreSQL allows 65535 per statement.
constexpr std::size_t k_rows_per_statement = 8000;

}  // namespace

inbox_store::inbox_store(const detail::schema_name& schema, std::string consumer)
    : m_consumer(std::move(consumer)),
      m_inbox(schema.table("inbox")),
      m_dead(schema.table("inbox_dead")),
      m_offsets(schema.table("inbox_offsets")) {}

std::set<std::string> inbox_store::insert_new(
    pqxx::work& tx, const std::vector<const ReceivedMessage*>& messages) const {
  std::set<std::string> fresh;
  for (std::size_t from = 0; from < messages.size(); from += k_rows_per_statement) {
    const std::size_t n = std::min(k_rows_per_statement, messages.size() - from);
    std::string sql = "INSERT INTO " + m_inbox +
                      " (consumer, message_id, topic, \"partition\", \"offset\") VALUES ";
    // Parameters go in row order: consumer, then (id, topic, partition, offset) per row.
    std::vector<std::string> params;
    params.reserve(4 * n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& m = *messages[from + i];
      sql += fmt::format("{}($1, ${}, ${}, ${}::integer, ${}::bigint)", i ? "," : "", 4 * i + 2,
                         4 * i + 3, 4 * i + 4, 4 * i + 5);
      params.push_back(m.id);
      params.push_back(m.topic);
      params.push_back(std::to_string(m.partition));
      params.push_back(std::to_string(m.offset));
    }
    sql += " ON CONFLICT DO NOTHING RETURNING message_id";
    const auto r = pq::exec(tx, sql, m_consumer, pq::each(params));
    for (const auto& row : r) fresh.insert(row[0].as<std::string>());
  }
  return fresh;
}

void inbox_store::insert_dead(pqxx::work& tx, const ReceivedMessage& m, const std::string& error,
                              int attempts) const {
  const auto payload = pq::binary(m.payload);
  // The key travels as hex (NULL for none): pqxx binds bytea only as a non-null value.
  std::string key_hex;
  if (m.key) {
    for (unsigned char c : *m.key) key_hex += fmt::format("{:02x}", c);
  }
  pq::exec(tx,
           "INSERT INTO " + m_dead +
               " (consumer, message_id, topic, \"partition\", \"offset\", key, payload, "
               "headers, error, attempts) VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'), "
               "$7, $8::jsonb, $9, $10) ON CONFLICT (consumer, message_id) DO NOTHING",
           m_consumer, m.id, m.topic, m.partition, m.offset, m.key ? key_hex.c_str() : nullptr,
           payload, detail::headers_to_json(m.headers), error, attempts);
}

std::map<TopicPartition, std::int64_t> inbox_store::load_offsets(pqxx::connection& db) const {
  pqxx::read_transaction tx(db);
  const auto r = pq::exec(
      tx, "SELECT topic, \"partition\", next_offset FROM " + m_offsets + " WHERE consumer = $1",
      m_consumer);
  std::map<TopicPartition, std::int64_t> stored;
  for (const auto& row : r) {
    stored[{row[0].as<std::string>(), row[1].as<std::int32_t>()}] = row[2].as<std::int64_t>();
  }
  return stored;
}

void inbox_store::upsert_offsets(pqxx::work& tx,
                                 const std::map<TopicPartition, std::int64_t>& next) const {
  if (next.empty()) return;
  std::string sql =
      "INSERT INTO " + m_offsets + " AS o (consumer, topic, \"partition\", next_offset) VALUES ";
  std::vector<std::string> params;
  std::size_t i = 0;
  for (const auto& [tp, offset] : next) {
    sql += fmt::format("{}($1, ${}, ${}::integer, ${}::bigint)", i ? "," : "", 3 * i + 2, 3 * i + 3,
                       3 * i + 4);
    params.push_back(tp.topic);
    params.push_back(std::to_string(tp.partition));
    params.push_back(std::to_string(offset));
    ++i;
  }
  // Never backwards: a consumer that lost its partitions while committing a slow batch must
  // not move the new owner back (it would only re-read duplicates, but why).
  sql +=
      " ON CONFLICT (consumer, topic, \"partition\") DO UPDATE SET next_offset = "
      "greatest(o.next_offset, EXCLUDED.next_offset), updated_at = now()";
  pq::exec(tx, sql, m_consumer, pq::each(params));
}

std::vector<dead_row> inbox_store::requeued(pqxx::work& tx, int limit) const {
  const auto rows = pq::exec(
      tx,
      "SELECT id, message_id, topic, \"partition\", \"offset\", key, payload, headers::text, "
      "attempts FROM " +
          m_dead +
          " WHERE consumer = $1 AND requeued_at IS NOT NULL ORDER BY id LIMIT $2 "
          "FOR UPDATE SKIP LOCKED",
      m_consumer, limit);
  std::vector<dead_row> out;
  for (const auto& row : rows) {
    dead_row d;
    d.id = row[0].as<std::int64_t>();
    auto& m = d.message;
    m.id = row[1].as<std::string>();
    m.topic = row[2].as<std::string>();
    m.partition = row[3].as<std::int32_t>();
    m.offset = row[4].as<std::int64_t>();
    if (!row[5].is_null()) m.key = pq::bytes_of(row[5]);
    m.payload = pq::bytes_of(row[6]);
    m.headers = detail::headers_from_json(row[7].as<std::string>());
    m.attempt = row[8].as<int>() + 1;
    out.push_back(std::move(d));
  }
  return out;
}

void inbox_store::delete_dead(pqxx::work& tx, std::int64_t id) const {
  pq::exec(tx, "DELETE FROM " + m_dead + " WHERE id = $1", id);
}

void inbox_store::failed_again(pqxx::work& tx, std::int64_t id, const std::string& error) const {
  pq::exec(tx,
           "UPDATE " + m_dead +
               " SET requeued_at = NULL, attempts = attempts + 1, error = $2, "
               "failed_at = now() WHERE id = $1",
           id, storable_text(error));
}

std::uint64_t inbox_store::delete_expired(pqxx::connection& db, std::chrono::hours retention,
                                          int batch) const {
  // A short autocommit DELETE by primary key: no long locks, no long transaction.
  pqxx::nontransaction tx(db, "txbox_cleanup");
  const auto r =
      pq::exec(tx,
               "DELETE FROM " + m_inbox + " i USING (SELECT message_id FROM " + m_inbox +
                   " WHERE consumer = $1 AND processed_at < now() - make_interval(hours => $2) "
                   "LIMIT $3) old WHERE i.consumer = $1 AND i.message_id = old.message_id",
               m_consumer, static_cast<int>(retention.count()), batch);
  return r.affected_rows();
}

}  // namespace txbox::inbox
