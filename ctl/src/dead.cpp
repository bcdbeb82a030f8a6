// txboxctl outbox dead … and inbox dead …: list, show, requeue.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <pqxx/pqxx>
#include <set>

#include "ctl.hpp"
#include "output.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::ctl {
namespace {

using json = nlohmann::json;

std::string id_array(const std::vector<std::int64_t>& ids) {
  return fmt::format("{{{}}}", fmt::join(ids, ","));
}

std::string id_list(const std::vector<std::int64_t>& ids) {
  constexpr std::size_t k_shown = 20;
  std::vector<std::int64_t> head(ids.begin(), ids.begin() + std::min(ids.size(), k_shown));
  return fmt::format(
      "{}{}", fmt::join(head, ", "),
      ids.size() > k_shown ? fmt::format(", … ({} more)", ids.size() - k_shown) : std::string());
}

// Checks the schema version in its own statement, before the command's transaction.
void check_schema(Database& db, int needed, std::string_view command) {
  pqxx::nontransaction tx(*db.conn);
  require_version(read_schema_state(tx, db.schema), db.schema, needed, command);
}

std::optional<std::string> bytes_of(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return pq::bytes_of(f);
}

json headers_of(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return json::parse(f.as<std::string>(), nullptr, false);
}

// `name  value` lines for `show`.
void field(const std::string& name, const std::string& value) {
  std::cout << fmt::format("{:<12}{}\n", name, printable(value));
}

void print_headers(const json& headers) {
  if (headers.empty()) {
    field("headers", dump(headers));
    return;
  }
  std::cout << "headers\n";
  if (headers.is_array()) {
    for (const auto& h : headers) std::cout << "  " << printable(dump(h)) << '\n';
  } else {
    std::cout << "  " << printable(dump(headers)) << '\n';
  }
}

void print_bytes(const std::string& name, const std::optional<std::string>& bytes) {
  if (!bytes) {
    field(name, "(null)");
  } else if (bytes->empty()) {
    field(name, "(empty)");
  } else if (is_text(*bytes)) {
    std::cout << fmt::format("{} ({} bytes, UTF-8 text)\n", name, bytes->size()) << *bytes
              << (bytes->back() == '\n' ? "" : "\n");
  } else {
    std::cout << fmt::format("{} ({} bytes, binary)\n", name, bytes->size()) << hex_dump(*bytes);
  }
}

void print_total(std::size_t shown, std::int64_t total, const char* what) {
  if (total == 0) {
    std::cout << fmt::format("no {}\n", what);
  } else if (static_cast<std::int64_t>(shown) < total) {
    std::cout << fmt::format("{} of {} {} shown (oldest first); raise --limit for more\n", shown,
                             total, what);
  } else {
    std::cout << fmt::format("{} {}\n", total, what);
  }
}

// Moves the dead rows `ids` back into the outbox in one statement of the caller's transaction;
// returns the ids moved. Keyed rows first take the writer's per-key locks (the SQL of
// txbox::Outbox::enqueue, detail::key_lock_sql) before they get their new outbox id, so for
// one key, id order stays commit order.
std::vector<std::int64_t> move_to_outbox(pqxx::work& tx, const std::string& s,
                                         const std::vector<std::int64_t>& ids) {
  const std::string array = id_array(ids);
  pq::exec(
      tx,
      detail::key_lock_sql("SELECT key FROM " + s + ".outbox_dead WHERE id = ANY($1::bigint[])"),
      array);
  const auto moved = pq::exec(
      tx,
      "WITH d AS (DELETE FROM " + s +
          ".outbox_dead WHERE id = ANY($1::bigint[]) RETURNING id, message_id, topic, key, "
          "payload, headers, created_at), "
          "i AS (INSERT INTO " +
          s +
          ".outbox (message_id, topic, key, payload, headers, created_at) "
          "SELECT message_id, topic, key, payload, headers, created_at FROM d ORDER BY id) "
          "SELECT id FROM d ORDER BY id",
      array);
  std::vector<std::int64_t> out;
  for (const auto& row : moved) out.push_back(row[0].as<std::int64_t>());
  return out;
}

std::vector<std::int64_t> sorted_unique(std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::vector<std::int64_t> absent(const std::vector<std::int64_t>& wanted,
                                 const std::vector<std::int64_t>& got) {
  const std::set<std::int64_t> have(got.begin(), got.end());
  std::vector<std::int64_t> out;
  for (auto id : wanted) {
    if (!have.contains(id)) out.push_back(id);
  }
  return out;
}

void print_requeued(const Options& o, const std::vector<std::int64_t>& ids, const char* from,
                    const char* to) {
  if (o.json) {
    print_json({{"requeued", ids.size()}, {"ids", ids}});
  } else if (ids.empty()) {
    std::cout << fmt::format("nothing to requeue in {}\n", from);
  } else {
    std::cout << fmt::format("requeued {} message(s) from {} {}: id {}\n", ids.size(), from, to,
                             id_list(ids));
  }
}

}  // namespace

// ---------------------------------------------------------------- outbox

int cmd_outbox_dead_list(const Options& o, const DeadListOptions& lo) {
  Database db = connect(o);
  check_schema(db, k_outbox_dead_version, "txboxctl outbox dead list");
  pq::read_only_snapshot tx(*db.conn);
  const std::string where = " WHERE ($1 = '' OR topic = $1)";
  const auto total =
      pq::exec1(tx, "SELECT count(*) FROM " + db.s + ".outbox_dead" + where, lo.topic)[0]
          .as<std::int64_t>();
  const auto rows =
      pq::exec(tx,
               "SELECT id, message_id::text, topic, key, attempts, " + sql_ts("failed_at") + ", " +
                   sql_ts("created_at") + ", error, length(payload) FROM " + db.s + ".outbox_dead" +
                   where + " ORDER BY id LIMIT $2",
               lo.topic, lo.limit);
  tx.commit();

  if (o.json) {
    json j_rows = json::array();
    for (const auto& r : rows) {
      j_rows.push_back({{"id", r[0].as<std::int64_t>()},
                        {"message_id", r[1].as<std::string>()},
                        {"topic", r[2].as<std::string>()},
                        {"key", r[3].is_null() ? json(nullptr) : json(r[3].as<std::string>())},
                        {"attempts", r[4].as<int>()},
                        {"failed_at", r[5].as<std::string>()},
                        {"created_at", r[6].as<std::string>()},
                        {"error", r[7].as<std::string>()},
                        {"payload_size", r[8].as<std::int64_t>()}});
    }
    print_json({{"total", total}, {"rows", j_rows}});
    return k_exit_ok;
  }
  Table t({"id", "failed at", "topic", "key", "attempts", "bytes", "message id", "error"},
          {true, false, false, false, true, true, false, false});
  for (const auto& r : rows) {
    t.add({r[0].as<std::string>(), r[5].as<std::string>(), r[2].as<std::string>(),
           r[3].is_null() ? "-" : r[3].as<std::string>(), r[4].as<std::string>(),
           r[8].as<std::string>(), r[1].as<std::string>(), r[7].as<std::string>()});
  }
  if (!t.empty()) t.print(std::cout, "");
  print_total(rows.size(), total, "dead outbox message(s)");
  return k_exit_ok;
}

int cmd_outbox_dead_show(const Options& o, std::int64_t id) {
  Database db = connect(o);
  check_schema(db, k_outbox_dead_version, "txboxctl outbox dead show");
  pqxx::nontransaction tx(*db.conn);
  const auto rows =
      pq::exec(tx,
               "SELECT id, message_id::text, topic, key, payload, headers::text, " +
                   sql_ts("created_at") + ", attempts, error, " + sql_ts("failed_at") + " FROM " +
                   db.s + ".outbox_dead WHERE id = $1",
               id);
  if (rows.empty()) {
    throw error(
        fmt::format("{}.outbox_dead has no row with id {}. Hint: txboxctl outbox dead list "
                    "shows the ids",
                    db.schema, id));
  }
  const auto& r = rows[0];
  const auto payload = bytes_of(r[4]);
  const json headers = headers_of(r[5]);
  if (o.json) {
    json j{{"id", r[0].as<std::int64_t>()},
           {"message_id", r[1].as<std::string>()},
           {"topic", r[2].as<std::string>()},
           {"key", r[3].is_null() ? json(nullptr) : json(r[3].as<std::string>())},
           {"headers", headers},
           {"created_at", r[6].as<std::string>()},
           {"attempts", r[7].as<int>()},
           {"error", r[8].as<std::string>()},
           {"failed_at", r[9].as<std::string>()}};
    put_bytes(j, "payload", payload ? &*payload : nullptr);
    print_json(j);
    return k_exit_ok;
  }
  field("id", r[0].as<std::string>());
  field("message_id", r[1].as<std::string>());
  field("topic", r[2].as<std::string>());
  field("key", r[3].is_null() ? "(none)" : r[3].as<std::string>());
  field("created_at", r[6].as<std::string>());
  field("failed_at", r[9].as<std::string>());
  field("attempts", r[7].as<std::string>());
  field("error", r[8].as<std::string>());
  print_headers(headers);
  print_bytes("payload", payload);
  return k_exit_ok;
}

int cmd_outbox_dead_requeue(const Options& o, const RequeueOptions& ro) {
  Database db = connect(o);
  check_schema(db, k_outbox_dead_version, "txboxctl outbox dead requeue");
  std::vector<std::int64_t> moved;
  if (!ro.all) {
    // All or nothing: one transaction, rolled back if any id is missing.
    const auto wanted = sorted_unique(ro.ids);
    pqxx::work tx(*db.conn);
    moved = move_to_outbox(tx, db.s, wanted);
    if (const auto missing = absent(wanted, moved); !missing.empty()) {
      throw error(fmt::format("{}.outbox_dead has no row with id {}; nothing was requeued",
                              db.schema, id_list(missing)));
    }
    tx.commit();
  } else {
    // Batches of their own transactions, up to the newest dead row seen now (rows that die
    // again meanwhile are not chased).
    std::int64_t upto = 0;
    {
      pqxx::nontransaction tx(*db.conn);
      const auto r = pq::exec1(
          tx,
          "SELECT coalesce(max(id), 0) FROM " + db.s + ".outbox_dead WHERE ($1 = '' OR topic = $1)",
          ro.topic);
      upto = r[0].as<std::int64_t>();
    }
    std::int64_t after = 0;
    while (true) {
      pqxx::work tx(*db.conn);
      std::vector<std::int64_t> batch;
      for (const auto& row :
           pq::exec(tx,
                    "SELECT id FROM " + db.s +
                        ".outbox_dead WHERE id > $1 AND id <= $2 AND ($3 = '' OR topic = $3) "
                        "ORDER BY id LIMIT $4",
                    after, upto, ro.topic, ro.batch_size)) {
        batch.push_back(row[0].as<std::int64_t>());
      }
      if (batch.empty()) break;
      const auto done = move_to_outbox(tx, db.s, batch);
      tx.commit();
      moved.insert(moved.end(), done.begin(), done.end());
      after = batch.back();
    }
  }
  print_requeued(o, moved, "outbox_dead", "back into the outbox");
  return k_exit_ok;
}

// ---------------------------------------------------------------- inbox

int cmd_inbox_dead_list(const Options& o, const DeadListOptions& lo) {
  Database db = connect(o);
  check_schema(db, k_inbox_requeue_version, "txboxctl inbox dead list");
  pq::read_only_snapshot tx(*db.conn);
  const std::string where = " WHERE ($1 = '' OR consumer = $1)";
  const auto total =
      pq::exec1(tx, "SELECT count(*) FROM " + db.s + ".inbox_dead" + where, lo.consumer)[0]
          .as<std::int64_t>();
  const auto rows = pq::exec(
      tx,
      "SELECT id, consumer, message_id, topic, \"partition\", \"offset\", attempts, " +
          sql_ts("failed_at") + ", " + sql_ts("requeued_at") + ", error, length(payload) FROM " +
          db.s + ".inbox_dead" + where + " ORDER BY id LIMIT $2",
      lo.consumer, lo.limit);
  tx.commit();

  if (o.json) {
    json j_rows = json::array();
    for (const auto& r : rows) {
      j_rows.push_back(
          {{"id", r[0].as<std::int64_t>()},
           {"consumer", r[1].as<std::string>()},
           {"message_id", r[2].as<std::string>()},
           {"topic", r[3].as<std::string>()},
           {"partition", r[4].as<int>()},
           {"offset", r[5].as<std::int64_t>()},
           {"attempts", r[6].as<int>()},
           {"failed_at", r[7].as<std::string>()},
           {"requeued_at", r[8].is_null() ? json(nullptr) : json(r[8].as<std::string>())},
           {"error", r[9].as<std::string>()},
           {"payload_size", r[10].is_null() ? json(nullptr) : json(r[10].as<std::int64_t>())}});
    }
    print_json({{"total", total}, {"rows", j_rows}});
    return k_exit_ok;
  }
  Table t({"id", "failed at", "consumer", "topic/partition@offset", "attempts", "requeued at",
           "message id", "error"},
          {true, false, false, false, true, false, false, false});
  for (const auto& r : rows) {
    t.add({r[0].as<std::string>(), r[7].as<std::string>(), r[1].as<std::string>(),
           fmt::format("{}/{}@{}", r[3].as<std::string>(), r[4].as<std::string>(),
                       r[5].as<std::string>()),
           r[6].as<std::string>(), r[8].is_null() ? "-" : r[8].as<std::string>(),
           r[2].as<std::string>(), r[9].as<std::string>()});
  }
  if (!t.empty()) t.print(std::cout, "");
  print_total(rows.size(), total, "dead inbox message(s)");
  return k_exit_ok;
}

int cmd_inbox_dead_show(const Options& o, std::int64_t id) {
  Database db = connect(o);
  check_schema(db, k_inbox_requeue_version, "txboxctl inbox dead show");
  pqxx::nontransaction tx(*db.conn);
  const auto rows =
      pq::exec(tx,
               "SELECT id, consumer, message_id, topic, \"partition\", \"offset\", key, payload, "
               "headers::text, error, attempts, " +
                   sql_ts("failed_at") + ", " + sql_ts("requeued_at") + " FROM " + db.s +
                   ".inbox_dead WHERE id = $1",
               id);
  if (rows.empty()) {
    throw error(
        fmt::format("{}.inbox_dead has no row with id {}. Hint: txboxctl inbox dead list "
                    "shows the ids",
                    db.schema, id));
  }
  const auto& r = rows[0];
  const auto key = bytes_of(r[6]);
  const auto payload = bytes_of(r[7]);
  const json headers = headers_of(r[8]);
  if (o.json) {
    json j{{"id", r[0].as<std::int64_t>()},
           {"consumer", r[1].as<std::string>()},
           {"message_id", r[2].as<std::string>()},
           {"topic", r[3].as<std::string>()},
           {"partition", r[4].as<int>()},
           {"offset", r[5].as<std::int64_t>()},
           {"headers", headers},
           {"error", r[9].as<std::string>()},
           {"attempts", r[10].as<int>()},
           {"failed_at", r[11].as<std::string>()},
           {"requeued_at", r[12].is_null() ? json(nullptr) : json(r[12].as<std::string>())}};
    put_bytes(j, "key", key ? &*key : nullptr);
    put_bytes(j, "payload", payload ? &*payload : nullptr);
    print_json(j);
    return k_exit_ok;
  }
  field("id", r[0].as<std::string>());
  field("consumer", r[1].as<std::string>());
  field("message_id", r[2].as<std::string>());
  field("source", fmt::format("topic {}, partition {}, offset {}", r[3].as<std::string>(),
                              r[4].as<std::string>(), r[5].as<std::string>()));
  if (!key) {
    field("key", "(none)");
  } else if (is_text(*key)) {
    field("key", *key);
  } else {
    field("key", "(binary) " + base64(*key));
  }
  field("failed_at", r[11].as<std::string>());
  field("requeued_at", r[12].is_null() ? "(not requeued)" : r[12].as<std::string>());
  field("attempts", r[10].as<std::string>());
  field("error", r[9].as<std::string>());
  print_headers(headers);
  print_bytes("payload", payload);
  return k_exit_ok;
}

int cmd_inbox_dead_requeue(const Options& o, const RequeueOptions& ro) {
  Database db = connect(o);
  check_schema(db, k_inbox_requeue_version, "txboxctl inbox dead requeue");
  // The consumer picks up rows with requeued_at set, runs its handler again and deletes the
  // dead row when the handler succeeds.
  std::vector<std::int64_t> marked;
  if (!ro.all) {
    const auto wanted = sorted_unique(ro.ids);
    pqxx::work tx(*db.conn);
    for (const auto& row :
         pq::exec(tx,
                  "UPDATE " + db.s +
                      ".inbox_dead SET requeued_at = now() WHERE id = ANY($1::bigint[]) "
                      "AND ($2 = '' OR consumer = $2) RETURNING id",
                  id_array(wanted), ro.consumer)) {
      marked.push_back(row[0].as<std::int64_t>());
    }
    std::sort(marked.begin(), marked.end());
    if (const auto missing = absent(wanted, marked); !missing.empty()) {
      throw error(fmt::format("{}.inbox_dead has no row with id {}{}; nothing was requeued",
                              db.schema, id_list(missing),
                              ro.consumer.empty() ? "" : " for consumer '" + ro.consumer + "'"));
    }
    tx.commit();
  } else {
    std::int64_t upto = 0;
    {
      pqxx::nontransaction tx(*db.conn);
      upto = pq::exec1(
                 tx, "SELECT coalesce(max(id), 0) FROM " + db.s + ".inbox_dead WHERE consumer = $1",
                 ro.consumer)[0]
                 .as<std::int64_t>();
    }
    std::int64_t after = 0;
    while (true) {
      pqxx::work tx(*db.conn);
      const auto rows = pq::exec(
          tx,
          "UPDATE " + db.s + ".inbox_dead SET requeued_at = now() WHERE id IN (SELECT id FROM " +
              db.s +
              ".inbox_dead WHERE consumer = $1 AND requeued_at IS NULL AND id > $2 AND id <= $3 "
              "ORDER BY id LIMIT $4) RETURNING id",
          ro.consumer, after, upto, ro.batch_size);
      tx.commit();
      if (rows.empty()) break;
      std::vector<std::int64_t> batch;
      for (const auto& row : rows) batch.push_back(row[0].as<std::int64_t>());
      std::sort(batch.begin(), batch.end());
      marked.insert(marked.end(), batch.begin(), batch.end());
      after = batch.back();
    }
  }
  print_requeued(o, marked, "inbox_dead", "for their consumer to retry");
  return k_exit_ok;
}

}  // namespace txbox::ctl
