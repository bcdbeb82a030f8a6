// txboxctl inbox dead …: list, show, requeue (for the consumer to process again).
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <pqxx/pqxx>

#include "ctl.hpp"
#include "dead_support.hpp"
#include "output.hpp"
#include "txbox/detail/pq.hpp"

namespace txbox::ctl {

using json = nlohmann::json;

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
