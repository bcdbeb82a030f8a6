// txboxctl outbox dead …: list, show, requeue (back into the outbox).
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "dead_support.hpp"
#include "output.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/detail/schema.hpp"

namespace txbox::ctl {
namespace {

using json = nlohmann::json;

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

}  // namespace

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

}  // namespace txbox::ctl
