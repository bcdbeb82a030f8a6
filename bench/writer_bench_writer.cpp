// One writer of the writers' bench: a connection, its prepared statements, one business
// transaction at a time.
#include <fmt/format.h>

#include <span>

#include "txbox/detail/pq.hpp"
#include "writer_bench.hpp"

namespace pq = txbox::pq;

namespace wb {
namespace {

std::string statement_name(const Arm& arm, int n) {
  return fmt::format("wb_{}_{}", arm.name, n);
}

// ~`bytes` of JSON, the shape of an order event.
std::string make_payload(int bytes) {
  std::string p =
      R"({"event":"OrderPlaced","currency":"EUR","lines":[{"sku":"A-1","qty":1}],"note":")";
  while (static_cast<int>(p.size()) < bytes - 2) p += 'x';
  return p + "\"}";
}

// The headers txbox stores for a message with a type and no caller headers.
std::string make_headers() {
  return R"([["ce_specversion","1.0"],["ce_source","txbox"],)"
         R"(["ce_time","2026-12-03T10:00:00.123456Z"],["ce_type","OrderPlaced"]])";
}

}  // namespace

Writer::Writer(const Options& o, const std::vector<Arm>& arms, unsigned seed)
    : m_conn(o.pg),
      m_rng(seed),
      m_keys(o.keys),
      m_payload(make_payload(o.payload)),
      m_headers(make_headers()) {
  pq::exec(pqxx::nontransaction(m_conn), "SELECT set_config('application_name', $1, false)",
           std::string("writer_bench"));
  m_conn.prepare("wb_order",
                 fmt::format("INSERT INTO \"{}\".orders (customer, amount) VALUES ($1::text, "
                             "$2::bigint)",
                             k_schema));
  for (const Arm& arm : arms) {
    for (const int n : o.msgs) {
      const std::string sql = arm_sql(arm, n);
      if (!sql.empty()) m_conn.prepare(statement_name(arm, n), sql);
    }
  }
}

void Writer::run_tx(const Arm& arm, int n) {
  const std::vector<std::string> keys = pick_keys(arm, n);
  pqxx::work tx(m_conn);
  insert_order(tx, keys.front());
  switch (arm.kind) {
    case Kind::orders_only:
      break;
    case Kind::plain:
    case Kind::plain_stmt:
    case Kind::plain_lock:
      insert_plain(tx, arm, keys);
      break;
    case Kind::cpp:
      call_cpp(tx, arm, keys);
      break;
    case Kind::sql:
      call_sql(tx, arm, keys);
      break;
  }
  tx.commit();
}

void Writer::insert_order(pqxx::work& tx, const std::string& customer) {
  const auto amount = static_cast<long>(m_rng() % 100'000);
  pq::exec_prepared(tx, "wb_order", customer, amount);
}

void Writer::insert_plain(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys) {
  const std::size_t n = keys.size();
  std::vector<std::string> ids;
  ids.reserve(n);
  for (std::size_t i = 0; i < n; ++i) ids.push_back(message_id(arm.v4_ids));
  const std::vector<std::string> topics(n, "orders");
  const std::vector<pq::binary_param> payloads(n, pq::binary(m_payload));
  const std::vector<std::string> headers(n, m_headers);
  pq::exec_prepared(tx, statement_name(arm, static_cast<int>(n)), pq::each(ids), pq::each(topics),
                    pq::each(keys), pq::each(payloads), pq::each(headers));
}

void Writer::call_sql(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys) {
  const std::vector<pq::binary_param> payloads(keys.size(), pq::binary(m_payload));
  pq::exec_prepared(tx, statement_name(arm, static_cast<int>(keys.size())), std::string("orders"),
                    std::string("[]"), std::string("OrderPlaced"), pq::each(keys),
                    pq::each(payloads));
}

void Writer::call_cpp(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys) {
  std::vector<txbox::Message> messages;
  messages.reserve(keys.size());
  for (const std::string& k : keys) {
    messages.push_back(
        txbox::Message{.topic = "orders", .key = k, .payload = m_payload, .type = "OrderPlaced"});
  }
  arm.outbox->enqueue(tx, std::span<const txbox::Message>(messages));
}

std::vector<std::string> Writer::pick_keys(const Arm& arm, int n) {
  std::vector<std::string> keys;
  keys.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    keys.push_back(
        arm.one_key ? std::string("customer-hot")
                    : fmt::format("customer-{:05}", m_rng() % static_cast<std::uint64_t>(m_keys)));
  }
  return keys;
}

std::string Writer::message_id(bool v4) {
  if (!v4) return txbox::uuid_v7().str();
  txbox::Uuid u;
  for (std::size_t i = 0; i < u.bytes.size(); i += 8) {
    const std::uint64_t r = m_rng();
    for (std::size_t b = 0; b < 8; ++b) u.bytes[i + b] = static_cast<std::uint8_t>(r >> (8 * b));
  }
  u.bytes[6] = static_cast<std::uint8_t>((u.bytes[6] & 0x0F) | 0x40);
  u.bytes[8] = static_cast<std::uint8_t>((u.bytes[8] & 0x3F) | 0x80);
  return u.str();
}

}  // namespace wb
