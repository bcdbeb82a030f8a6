#include "txbox/outbox.hpp"

#include <fmt/format.h>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <string_view>

#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"
#include "txbox/validate.hpp"

namespace txbox {
namespace {

// Parameters per row in the insert statement; PostgreSQL allows 65535 per statement.
constexpr std::size_t k_columns = 5;
constexpr std::size_t k_max_rows_per_statement = 65535 / k_columns;

std::string rfc3339_now() {
  using namespace std::chrono;
  const auto now = time_point_cast<microseconds>(system_clock::now());
  const auto secs = time_point_cast<seconds>(now);
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (now - secs).count());
}

void check_message(const Message& m, const OutboxConfig& cfg) {
  check_topic_name(m.topic);
  if (m.payload.size() > cfg.max_payload_bytes) {
    throw message_rejected(fmt::format(
        "message for topic '{}' rejected: payload is {} bytes, the maximum is {}. Hint: raise "
        "OutboxConfig::max_payload_bytes together with the broker's message.max.bytes, or "
        "store large data elsewhere and send a reference",
        m.topic, m.payload.size(), cfg.max_payload_bytes));
  }
  if (m.key && (!is_valid_utf8(*m.key) || m.key->find('\0') != std::string::npos)) {
    throw message_rejected(fmt::format(
        "message for topic '{}' rejected: the key is not valid UTF-8 text (or contains NUL)",
        m.topic));
  }
  if (!is_valid_utf8(m.type) || m.type.find('\0') != std::string::npos) {
    throw message_rejected(
        fmt::format("message for topic '{}' rejected: the type is not valid UTF-8", m.topic));
  }
  if (m.headers.size() > cfg.max_headers) {
    throw message_rejected(
        fmt::format("message for topic '{}' rejected: {} headers, the maximum is {} (OutboxConfig::"
                    "max_headers)",
                    m.topic, m.headers.size(), cfg.max_headers));
  }
  for (std::size_t i = 0; i < m.headers.size(); ++i) {
    const Header& h = m.headers[i];
    if (h.name.empty() || !is_valid_utf8(h.name) || h.name.find('\0') != std::string::npos) {
      throw message_rejected(fmt::format(
          "message for topic '{}' rejected: header #{} has a name that is empty or not valid "
          "UTF-8",
          m.topic, i + 1));
    }
    if (!is_valid_utf8(h.value) || h.value.find('\0') != std::string::npos) {
      throw message_rejected(fmt::format(
          "message for topic '{}' rejected: the value of header '{}' is not valid UTF-8 text "
          "(or contains NUL). Hint: put binary data in the payload",
          m.topic, h.name));
    }
    if (h.name.starts_with("ce_")) {
      throw message_rejected(fmt::format(
          "message for topic '{}' rejected: header '{}' is reserved (txbox sets the ce_* "
          "CloudEvents headers). Hint: use Message::type for ce_type",
          m.topic, h.name));
    }
  }
}

// Headers as stored in outbox.headers: a JSON array of [name, value] pairs, in order.
std::string headers_json(const Message& m, const OutboxConfig& cfg, const std::string& time) {
  nlohmann::json arr = nlohmann::json::array();
  arr.push_back({headers::specversion, "1.0"});
  arr.push_back({headers::source, cfg.source});
  arr.push_back({headers::time, time});
  if (!m.type.empty()) arr.push_back({headers::type, m.type});
  for (const Header& h : m.headers) arr.push_back({h.name, h.value});
  return arr.dump();
}

// The rows of the prepared statement that takes a batch of `n` rows: n itself up to 16, then
// the next power of two (the rest padded with NULL ids, which the statement skips).
std::size_t prepared_size(std::size_t n) {
  if (n <= 16) return n;
  std::size_t p = 32;
  while (p < n) p *= 2;
  return p;
}

// A text[] literal of the batch's distinct keys ({"a","b\"c"}): one parameter however many
// keys. Keys are UTF-8 without NUL (check_message).
std::string key_array(std::span<const Message> messages) {
  std::set<std::string_view> keys;
  for (const Message& m : messages) {
    if (m.key) keys.insert(*m.key);
  }
  std::string out = "{";
  for (const std::string_view k : keys) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : k) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// A batch split over several statements takes every key's lock first, in one statement and
// in hash order: locking chunk by chunk, two such batches could each hold a key the other's
// later chunk needs (deadlock). The chunks' own locks are then re-entries of held locks.
void lock_all_keys(pqxx::transaction_base& tx, std::span<const Message> messages) {
  static const std::string sql = detail::key_lock_sql("SELECT unnest($1::text[])");
  pq::exec(tx, sql, key_array(messages));
}

// Stable (FNV-1a, 64 bits) hash of the table name: prepared statement names are per
// connection, and two Outboxes on one connection with different schemas need different names.
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

// The prepared statements' names and texts by size (prepared_size), built once per Outbox
// (copies share them).
struct Outbox::statements {
  std::map<std::size_t, std::string> names;
  std::map<std::size_t, std::string> sql;
  mutable pq::statement_registry prepared;  // which connections have which of them
};

Outbox::Outbox(OutboxConfig config) : m_config(std::move(config)) {
  const detail::schema_name schema(m_config.schema, "outbox schema (OutboxConfig::schema)");
  if (m_config.max_payload_bytes == 0) {
    throw config_error("OutboxConfig::max_payload_bytes must be greater than 0");
  }
  if (m_config.source.empty() || !is_valid_utf8(m_config.source)) {
    throw config_error("OutboxConfig::source must be non-empty UTF-8 (it is sent as ce_source)");
  }
  m_table = schema.table("outbox");
  if (m_config.prepare_statements) {
    auto st = std::make_shared<statements>();
    const std::uint64_t h = fnv1a(m_table);
    for (std::size_t rows = 1; rows <= k_prepared_rows; rows = prepared_size(rows + 1)) {
      st->names[rows] = fmt::format("txbox_enqueue_{:016x}_{}", h, rows);
      st->sql[rows] = detail::outbox_insert_sql(m_table, rows);
    }
    m_statements = std::move(st);
  }
}

Uuid Outbox::enqueue(pqxx::transaction_base& tx, const Message& message) const {
  return enqueue(tx, std::span<const Message>(&message, 1)).front();
}

std::vector<Uuid> Outbox::enqueue(pqxx::transaction_base& tx,
                                  std::span<const Message> messages) const {
  for (const Message& m : messages) check_message(m, m_config);

  std::vector<Uuid> ids;
  ids.reserve(messages.size());
  const std::string time = rfc3339_now();
  if (messages.size() > k_max_rows_per_statement) lock_all_keys(tx, messages);
  for (std::size_t begin = 0; begin < messages.size(); begin += k_max_rows_per_statement) {
    const auto chunk =
        messages.subspan(begin, std::min(k_max_rows_per_statement, messages.size() - begin));
    // Text parameters, except the payload, which goes as binary bytea; nullptr is SQL NULL.
    const bool prepared = m_statements && chunk.size() <= k_prepared_rows;
    const std::size_t rows = prepared ? prepared_size(chunk.size()) : chunk.size();
    std::vector<std::string> id_text;
    id_text.reserve(chunk.size());
    std::vector<const char*> id_params(rows, nullptr);
    std::vector<const char*> topics(rows, "");
    std::vector<const char*> keys(rows, nullptr);
    std::vector<pq::binary_param> payloads(rows, pq::binary(""));
    std::vector<std::string> json(rows, "[]");
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      const Message& m = chunk[i];
      ids.push_back(uuid_v7());
      id_text.push_back(ids.back().str());
      id_params[i] = id_text.back().c_str();
      topics[i] = m.topic.c_str();
      keys[i] = m.key ? m.key->c_str() : nullptr;
      payloads[i] = pq::binary(m.payload);
      json[i] = headers_json(m, m_config, time);
    }
    try {
      if (prepared) {
        // Parsed and planned once per connection (see pq::statement_registry).
        const std::string& name = m_statements->names.at(rows);
        m_statements->prepared.prepare(tx, name, m_statements->sql.at(rows));
        pq::exec_prepared(tx, name, pq::each(id_params), pq::each(topics), pq::each(keys),
                          pq::each(payloads), pq::each(json));
      } else {
        pq::exec(tx, detail::outbox_insert_sql(m_table, rows), pq::each(id_params),
                 pq::each(topics), pq::each(keys), pq::each(payloads), pq::each(json));
      }
    } catch (const pqxx::undefined_table&) {
      throw schema_error(fmt::format(
          "table {} does not exist. Hint: apply txbox's migrations (migrations/V*.sql) to this "
          "database, or set OutboxConfig::schema to the schema they were applied to",
          m_table));
    }
  }
  return ids;
}

Uuid enqueue(pqxx::transaction_base& tx, const Message& message) {
  static const Outbox default_outbox;
  return default_outbox.enqueue(tx, message);
}

std::vector<Uuid> enqueue(pqxx::transaction_base& tx, std::span<const Message> messages) {
  static const Outbox default_outbox;
  return default_outbox.enqueue(tx, messages);
}

}  // namespace txbox
