// The consume loop: collect a batch -> one transaction (dedupe rows, handlers, offsets) ->
// commit -> mirror offsets to Kafka. Offsets live in PostgreSQL; Kafka's are for lag tools.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "headers_codec.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/prometheus.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/detail/schema_check.hpp"
#include "txbox/inbox.hpp"
#include "txbox/validate.hpp"

namespace txbox {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Handler latency histogram bounds (seconds).
const std::vector<double> k_buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};

// Parameters per row of the dedupe INSERT; PostgreSQL allows 65535 per statement.
constexpr std::size_t k_rows_per_statement = 8000;

volatile std::sig_atomic_t g_signalled = 0;
extern "C" void on_stop_signal(int) {
  g_signalled = 1;
}

struct TopicPartition {
  std::string topic;
  std::int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

std::string tp_text(const TopicPartition& tp) {
  return fmt::format("{}/{}", tp.topic, tp.partition);
}

// What the consumer knows about one assigned partition.
struct PartitionState {
  std::int64_t next_offset = -1;  // next offset to process (-1: not known yet)
  bool paused = false;            // waiting for a retry, or for the database
  clock::time_point resume_at{};
  std::int64_t failing_offset = -1;  // offset of the message whose handler failed
  int attempts = 0;                  // failed runs of that message
  bool blocked = false;              // logged as blocked (policy block)
};

// Longest id stored as the inbox key (a btree entry must stay well under PostgreSQL's ~2.7 kB).
constexpr std::size_t k_max_id_bytes = 512;

// The inbox key of a record: its ce_id as is when it is text PostgreSQL can store (UTF-8, no
// NUL); other bytes hex-encoded ("ce_id-hex:..."), so the same bytes always give the same key;
// a missing or empty ce_id, or one longer than k_max_id_bytes, gives the record's position
// ("kafka:<topic>/<partition>/<offset>"), which still dedupes redeliveries of that record.
std::string dedupe_id(const ReceivedMessage& r) {
  const std::string* id = r.header(headers::id);
  std::string key;
  if (id && !id->empty()) {
    if (is_valid_utf8(*id) && id->find('\0') == std::string::npos) {
      key = *id;
    } else {
      key = "ce_id-hex:";
      for (unsigned char c : *id) key += fmt::format("{:02x}", c);
    }
  }
  if (key.empty() || key.size() > k_max_id_bytes) {
    key = fmt::format("kafka:{}/{}/{}", r.topic, r.partition, r.offset);
  }
  return key;
}

// A handler's error text as PostgreSQL text can hold it: bytes that are not UTF-8 (and NUL)
// become \xNN.
std::string storable_text(std::string_view text) {
  if (is_valid_utf8(text) && text.find('\0') == std::string_view::npos) return std::string(text);
  std::string out;
  for (unsigned char c : text) {
    if (c == 0 || c >= 0x80) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

ReceivedMessage to_received(const rd_kafka_message_t* m) {
  ReceivedMessage r;
  r.topic = rd_kafka_topic_name(m->rkt);
  r.partition = m->partition;
  r.offset = m->offset;
  if (m->key) r.key.emplace(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) r.payload.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_timestamp_type_t tstype;
  const std::int64_t ts = rd_kafka_message_timestamp(m, &tstype);
  if (ts >= 0) r.timestamp = std::chrono::system_clock::time_point(std::chrono::milliseconds(ts));
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      r.headers.push_back(
          {name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  r.id = dedupe_id(r);
  return r;
}

// A handler failure inside a batch transaction.
struct HandlerFailure {
  std::size_t index = 0;
  std::string error;
};

// A message to process in this batch, and what to do with it.
struct Item {
  ReceivedMessage msg;
  bool dead = false;  // handler failed max_attempts times: record in inbox_dead instead
  std::string dead_error{};
  int dead_attempts = 0;
};

}  // namespace

const std::string* ReceivedMessage::header(std::string_view name) const {
  for (const auto& h : headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

struct Consumer::impl {
  ConsumerConfig cfg;
  Handler handler;
  std::string s;  // quoted schema
  std::unique_ptr<pqxx::connection> db;
  detail::kafka_ptr rk;
  std::map<TopicPartition, PartitionState> parts;  // the current assignment
  std::set<TopicPartition> offsets_unknown;        // assigned while the database was down
  std::set<std::string> missing_topics;            // reported once each
  std::vector<detail::message_ptr> collected;
  std::mt19937_64 rng{std::random_device{}()};
  bool db_up = false;
  bool kafka_down = false;
  bool closed = false;
  clock::time_point next_reconnect{};
  std::chrono::milliseconds reconnect_backoff{0};
  clock::time_point next_cleanup{};
  clock::time_point next_requeue{};
  clock::time_point next_kafka_check{};

  mutable std::mutex stats_mutex;
  ConsumerStats st;

  impl(ConsumerConfig c, Handler h) : cfg(std::move(c)), handler(std::move(h)) {
    validate_consumer_config(cfg);
    if (!handler) throw config_error("txbox::Consumer needs a handler");
    s = "\"" + cfg.schema + "\"";
    st.handler_latency_buckets = k_buckets;
    st.handler_latency_counts.assign(k_buckets.size(), 0);
    try {
      connect();
    } catch (const pqxx::broken_connection& e) {
      throw transient_error(fmt::format(
          "cannot connect to the database ({}): {}. Hint: check database.url and that "
          "PostgreSQL is running",
          redact_conninfo(cfg.database_url), libpq_error_text(e.what(), cfg.database_url)));
    }
    make_consumer();
    next_cleanup = clock::now() + std::min<std::chrono::milliseconds>(cfg.cleanup_interval, 10s);
  }

  ~impl() { close(); }

  void close() {
    if (closed || !rk) return;
    closed = true;
    // Leaving the group revokes the partitions (on_rebalance runs once more).
    rd_kafka_consumer_close(rk.get());
    rk.reset();
  }

  // ---- state changes: one log line each ----
  void set_db_up(bool up, const std::string& why = {}) {
    if (up == db_up) return;
    db_up = up;
    if (up) {
      spdlog::info("inbox {}: database connected ({})", cfg.name,
                   redact_conninfo(cfg.database_url));
    } else {
      spdlog::warn("inbox {}: database unreachable, consumption paused, retrying: {}", cfg.name,
                   why);
    }
    update_ready();
  }
  void update_ready() {
    std::lock_guard lock(stats_mutex);
    st.ready = db_up && !kafka_down;
  }

  void connect() {
    db = std::make_unique<pqxx::connection>(cfg.database_url);
    detail::check_schema_version(*db, cfg.schema, inbox_schema_version, "txbox_consumer",
                                 "txbox::inbox");
    set_db_up(true);
  }

  // ---- kafka ----
  static void rebalance_trampoline(rd_kafka_t*, rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t* list, void* opaque) {
    static_cast<impl*>(opaque)->on_rebalance(err, list);
  }
  static void error_trampoline(rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<impl*>(opaque)->on_kafka_error(static_cast<rd_kafka_resp_err_t>(err), reason);
  }
  static void log_trampoline(const rd_kafka_t*, int level, const char* fac, const char* buf) {
    // librdkafka's own lines: warnings and worse only (the error callback reports state).
    if (level <= 4) spdlog::debug("librdkafka {}: {}", fac, buf);
  }

  void make_consumer() {
    detail::conf_ptr conf(rd_kafka_conf_new());
    char err[512];
    auto set = [&](const std::string& k, const std::string& v) {
      if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) !=
          RD_KAFKA_CONF_OK) {
        throw config_error(fmt::format("kafka.{}: {}", k, err));
      }
    };
    set("group.id", cfg.name);
    for (const auto& [k, v] : cfg.kafka) set(k, v);
    set("enable.auto.commit", "false");
    set("enable.auto.offset.store", "false");
    set("enable.partition.eof", "false");
    set("auto.offset.reset", cfg.start_from_earliest ? "earliest" : "latest");
    // A topic that does not exist yet is looked for again every 10 s, not every 5 minutes.
    if (!cfg.kafka.contains("topic.metadata.refresh.interval.ms")) {
      set("topic.metadata.refresh.interval.ms", "10000");
    }
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &rebalance_trampoline);
    rd_kafka_conf_set_error_cb(conf.get(), &error_trampoline);
    rd_kafka_conf_set_log_cb(conf.get(), &log_trampoline);
    rk.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
    if (!rk) throw config_error(fmt::format("cannot create the Kafka consumer: {}", err));
    (void)conf.release();  // owned by rk now
    rd_kafka_poll_set_consumer(rk.get());
    detail::partition_list_ptr topics(
        rd_kafka_topic_partition_list_new(static_cast<int>(cfg.topics.size())));
    for (const auto& t : cfg.topics) {
      rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    }
    if (const auto e = rd_kafka_subscribe(rk.get(), topics.get()); e) {
      throw config_error(fmt::format("cannot subscribe to {}: {}", fmt::join(cfg.topics, ", "),
                                     rd_kafka_err2str(e)));
    }
  }

  void on_kafka_error(rd_kafka_resp_err_t err, const char* reason) {
    if (rd_kafka_fatal_error(rk.get(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("inbox {}: fatal Kafka error: {}", cfg.name, reason);
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      if (!kafka_down) {
        kafka_down = true;
        spdlog::warn("inbox {}: Kafka unreachable, retrying: {}", cfg.name, reason);
        update_ready();
      }
    }
  }
  void kafka_reachable() {
    if (!kafka_down) return;
    kafka_down = false;
    spdlog::info("inbox {}: Kafka reachable again", cfg.name);
    update_ready();
  }

  bool cooperative() const {
    return std::strcmp(rd_kafka_rebalance_protocol(rk.get()), "COOPERATIVE") == 0;
  }

  // Runs inside rd_kafka_consumer_poll (never during a batch's transaction), so there is no
  // in-flight transaction to roll back: messages already collected for revoked partitions
  // are dropped before any of them reach the database.
  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) {
    {
      std::lock_guard lock(stats_mutex);
      ++st.rebalances;
    }
    std::vector<TopicPartition> tps;
    for (int i = 0; i < list->cnt; ++i) {
      tps.push_back({list->elems[i].topic, list->elems[i].partition});
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      bool known = false;
      if (db_up) {
        try {
          load_offsets(list);
          known = true;
        } catch (const pqxx::broken_connection& e) {
          lost_database(e.what());
        }
      }
      for (const auto& tp : tps) {
        parts[tp] = PartitionState{};
        if (!known) offsets_unknown.insert(tp);
      }
      if (!known) {
        // Start nowhere in particular; the partitions stay paused until the stored offsets
        // can be read, then seek there.
        for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
      }
      assign(list, true);
      // librdkafka keeps a partition's pause flag across unassign/assign: clear it, or a
      // partition paused before a revoke and assigned back would never be fetched again.
      if (known) {
        resume(tps);
      } else {
        pause(tps);
      }
      spdlog::info("inbox {}: assigned {} partition(s): {}", cfg.name, tps.size(), describe(tps));
    } else {
      if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        spdlog::warn("inbox {}: rebalance error: {}", cfg.name, rd_kafka_err2str(err));
      }
      for (const auto& tp : tps) {
        parts.erase(tp);
        offsets_unknown.erase(tp);
      }
      std::erase_if(collected, [&](const detail::message_ptr& m) {
        return std::find(tps.begin(), tps.end(),
                         TopicPartition{rd_kafka_topic_name(m->rkt), m->partition}) != tps.end();
      });
      resume(tps);  // do not leave a pause flag behind for a later assignment
      assign(list, false);
      spdlog::info("inbox {}: revoked {} partition(s): {}", cfg.name, tps.size(), describe(tps));
    }
  }

  static std::string describe(const std::vector<TopicPartition>& tps) {
    std::vector<std::string> names;
    for (const auto& tp : tps) names.push_back(tp_text(tp));
    return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
  }

  void assign(rd_kafka_topic_partition_list_t* list, bool add) {
    if (cooperative()) {
      detail::error_ptr e(add ? rd_kafka_incremental_assign(rk.get(), list)
                              : rd_kafka_incremental_unassign(rk.get(), list));
      if (e) spdlog::warn("inbox {}: {}", cfg.name, rd_kafka_error_string(e.get()));
    } else if (const auto e = rd_kafka_assign(rk.get(), add ? list : nullptr); e) {
      spdlog::warn("inbox {}: assign: {}", cfg.name, rd_kafka_err2str(e));
    }
  }

  static detail::partition_list_ptr make_list(const std::vector<TopicPartition>& tps) {
    detail::partition_list_ptr list(
        rd_kafka_topic_partition_list_new(static_cast<int>(std::max<std::size_t>(tps.size(), 1))));
    for (const auto& tp : tps) {
      rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    }
    return list;
  }

  void pause(const std::vector<TopicPartition>& tps) {
    if (tps.empty()) return;
    auto list = make_list(tps);
    rd_kafka_pause_partitions(rk.get(), list.get());
    for (const auto& tp : tps) {
      if (auto it = parts.find(tp); it != parts.end()) it->second.paused = true;
    }
  }
  void resume(const std::vector<TopicPartition>& tps) {
    if (tps.empty()) return;
    auto list = make_list(tps);
    rd_kafka_resume_partitions(rk.get(), list.get());
    for (const auto& tp : tps) {
      if (auto it = parts.find(tp); it != parts.end()) it->second.paused = false;
    }
  }
  // Moves the fetch position; messages fetched before are discarded by librdkafka.
  void seek(const std::vector<std::pair<TopicPartition, std::int64_t>>& to) {
    if (to.empty()) return;
    detail::partition_list_ptr list(rd_kafka_topic_partition_list_new(static_cast<int>(to.size())));
    for (const auto& [tp, offset] : to) {
      rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset =
          offset;
    }
    detail::error_ptr e(rd_kafka_seek_partitions(rk.get(), list.get(), 5000));
    if (e) spdlog::warn("inbox {}: seek: {}", cfg.name, rd_kafka_error_string(e.get()));
  }

  // Sets each partition's start offset to the one stored in PostgreSQL, or to
  // earliest/latest for a partition this consumer never processed.
  void load_offsets(rd_kafka_topic_partition_list_t* list) {
    pqxx::read_transaction tx(*db);
    const auto r = tx.exec_params(
        "SELECT topic, \"partition\", next_offset FROM " + s + ".inbox_offsets WHERE consumer = $1",
        cfg.name);
    std::map<TopicPartition, std::int64_t> stored;
    for (const auto& row : r) {
      stored[{row[0].as<std::string>(), row[1].as<std::int32_t>()}] = row[2].as<std::int64_t>();
    }
    for (int i = 0; i < list->cnt; ++i) {
      auto& e = list->elems[i];
      const auto it = stored.find({e.topic, e.partition});
      e.offset = it != stored.end()        ? it->second
                 : cfg.start_from_earliest ? RD_KAFKA_OFFSET_BEGINNING
                                           : RD_KAFKA_OFFSET_END;
      if (it != stored.end()) parts[{e.topic, e.partition}].next_offset = it->second;
    }
  }

  // ---- database outage ----
  void lost_database(const std::string& libpq_message) {
    const std::string why = libpq_error_text(libpq_message, cfg.database_url);
    db.reset();
    set_db_up(false, why);
    reconnect_backoff = std::clamp(reconnect_backoff * 2, cfg.retry_backoff_min,
                                   std::max(cfg.retry_backoff_min, cfg.retry_backoff_max));
    next_reconnect = clock::now() + jitter(reconnect_backoff);
    // Stop fetching everywhere; when the database is back, every partition seeks to the
    // offset stored there, so nothing collected meanwhile is lost or applied twice.
    std::vector<TopicPartition> all;
    for (auto& [tp, state] : parts) {
      all.push_back(tp);
      offsets_unknown.insert(tp);
    }
    pause(all);
    collected.clear();
  }

  void try_reconnect() {
    if (db_up || clock::now() < next_reconnect) return;
    try {
      connect();
      reconnect_backoff = 0ms;
    } catch (const pqxx::broken_connection& e) {
      db.reset();
      reconnect_backoff = std::clamp(reconnect_backoff * 2, cfg.retry_backoff_min,
                                     std::max(cfg.retry_backoff_min, cfg.retry_backoff_max));
      next_reconnect = clock::now() + jitter(reconnect_backoff);
    }
  }

  // Partitions assigned (or kept) while the database was down: read their offsets, seek.
  void recover_offsets() {
    if (!db_up || offsets_unknown.empty()) return;
    std::vector<TopicPartition> tps(offsets_unknown.begin(), offsets_unknown.end());
    auto list = make_list(tps);
    load_offsets(list.get());
    std::vector<std::pair<TopicPartition, std::int64_t>> to;
    for (int i = 0; i < list->cnt; ++i) {
      TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
      to.emplace_back(tp, list->elems[i].offset);
      parts[tp].failing_offset = -1;
      parts[tp].attempts = 0;
    }
    seek(to);
    offsets_unknown.clear();
    resume(tps);
  }

  std::chrono::milliseconds jitter(std::chrono::milliseconds d) {
    std::uniform_real_distribution<double> f(0.5, 1.0);
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(static_cast<double>(d.count()) * f(rng)));
  }

  std::chrono::milliseconds retry_delay(int attempts) {
    auto d = cfg.retry_backoff_min;
    for (int i = 1; i < attempts && d < cfg.retry_backoff_max; ++i) d *= 2;
    return jitter(std::min(d, cfg.retry_backoff_max));
  }

  // ---- collect ----
  void accept(detail::message_ptr m) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
          m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        const std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
        if (missing_topics.insert(topic).second) {
          spdlog::warn("inbox {}: topic {} does not exist (yet); consuming it once it does",
                       cfg.name, topic);
        }
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::debug("inbox {}: consume error: {}", cfg.name, rd_kafka_message_errstr(m.get()));
      }
      return;
    }
    kafka_reachable();
    const TopicPartition tp{rd_kafka_topic_name(m->rkt), m->partition};
    const auto it = parts.find(tp);
    if (it == parts.end() || it->second.paused || offsets_unknown.contains(tp)) return;
    if (it->second.next_offset >= 0 && m->offset < it->second.next_offset) return;  // stale
    collected.push_back(std::move(m));
  }

  void collect(std::chrono::milliseconds timeout) {
    const auto t = static_cast<int>(timeout.count());
    if (auto m = detail::message_ptr(rd_kafka_consumer_poll(rk.get(), t))) accept(std::move(m));
    if (collected.empty()) return;
    const auto fill_until = clock::now() + cfg.batch_wait;
    while (collected.size() < static_cast<std::size_t>(cfg.max_batch)) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(fill_until - clock::now());
      auto m = detail::message_ptr(rd_kafka_consumer_poll(
          rk.get(), static_cast<int>(std::max<std::int64_t>(left.count(), 0))));
      if (!m) break;
      accept(std::move(m));
    }
  }

  // ---- process ----
  void observe_latency(double seconds) {
    std::lock_guard lock(stats_mutex);
    for (std::size_t i = 0; i < k_buckets.size(); ++i) {
      if (seconds <= k_buckets[i]) ++st.handler_latency_counts[i];
    }
    ++st.handler_latency_count;
    st.handler_latency_sum += seconds;
  }

  // Inserts the dedupe rows of `items`; returns the ids that were new.
  std::set<std::string> insert_inbox_rows(pqxx::work& tx, const std::vector<Item*>& items) {
    std::set<std::string> fresh;
    for (std::size_t from = 0; from < items.size(); from += k_rows_per_statement) {
      const std::size_t n = std::min(k_rows_per_statement, items.size() - from);
      std::string sql = "INSERT INTO " + s +
                        ".inbox (consumer, message_id, topic, \"partition\", \"offset\") VALUES ";
      std::vector<std::string> ids, topics, partitions, offsets;
      for (std::size_t i = 0; i < n; ++i) {
        const auto& m = items[from + i]->msg;
        sql += fmt::format("{}($1, ${}, ${}, ${}::integer, ${}::bigint)", i ? "," : "", 4 * i + 2,
                           4 * i + 3, 4 * i + 4, 4 * i + 5);
        ids.push_back(m.id);
        topics.push_back(m.topic);
        partitions.push_back(std::to_string(m.partition));
        offsets.push_back(std::to_string(m.offset));
      }
      sql += " ON CONFLICT DO NOTHING RETURNING message_id";
      // Parameters go in row order: consumer, then (id, topic, partition, offset) per row.
      std::vector<std::string> params;
      params.reserve(4 * n);
      for (std::size_t i = 0; i < n; ++i) {
        params.push_back(ids[i]);
        params.push_back(topics[i]);
        params.push_back(partitions[i]);
        params.push_back(offsets[i]);
      }
      const auto r = tx.exec_params(sql, cfg.name, pqxx::prepare::make_dynamic_params(params));
      for (const auto& row : r) fresh.insert(row[0].as<std::string>());
    }
    return fresh;
  }

  void insert_dead(pqxx::work& tx, const Item& item) {
    const auto& m = item.msg;
    const pqxx::binarystring payload(m.payload.data(), m.payload.size());
    // The key travels as hex (NULL for none): pqxx binds bytea only as a non-null value.
    std::string key_hex;
    if (m.key) {
      for (unsigned char c : *m.key) key_hex += fmt::format("{:02x}", c);
    }
    tx.exec_params("INSERT INTO " + s +
                       ".inbox_dead (consumer, message_id, topic, \"partition\", \"offset\", key, "
                       "payload, headers, error, attempts) VALUES ($1, $2, $3, $4, $5, "
                       "decode($6, 'hex'), $7, $8::jsonb, $9, $10) "
                       "ON CONFLICT (consumer, message_id) DO NOTHING",
                   cfg.name, m.id, m.topic, m.partition, m.offset,
                   m.key ? key_hex.c_str() : nullptr, payload, detail::headers_to_json(m.headers),
                   item.dead_error, item.dead_attempts);
  }

  void upsert_offsets(pqxx::work& tx, const std::map<TopicPartition, std::int64_t>& next) {
    if (next.empty()) return;
    std::string sql = "INSERT INTO " + s +
                      ".inbox_offsets AS o (consumer, topic, \"partition\", next_offset) VALUES ";
    std::vector<std::string> params;
    std::size_t i = 0;
    for (const auto& [tp, offset] : next) {
      sql += fmt::format("{}($1, ${}, ${}::integer, ${}::bigint)", i ? "," : "", 3 * i + 2,
                         3 * i + 3, 3 * i + 4);
      params.push_back(tp.topic);
      params.push_back(std::to_string(tp.partition));
      params.push_back(std::to_string(offset));
      ++i;
    }
    // Never backwards: a consumer that lost its partitions while committing a slow batch
    // must not move the new owner back (it would only re-read duplicates, but why).
    sql +=
        " ON CONFLICT (consumer, topic, \"partition\") DO UPDATE SET next_offset = "
        "greatest(o.next_offset, EXCLUDED.next_offset), updated_at = now()";
    tx.exec_params(sql, cfg.name, pqxx::prepare::make_dynamic_params(params));
  }

  struct BatchResult {
    std::optional<HandlerFailure> failure;
    bool lost_assignment = false;
    std::size_t processed = 0, duplicates = 0, dead = 0;
    std::map<TopicPartition, std::int64_t> next;
  };

  // One transaction over the items not excluded. Handlers run without a savepoint each
  // (two round trips per message saved); when one throws, the whole transaction rolls back
  // and the caller runs the batch again without the failed partition's tail.
  BatchResult run_transaction(std::vector<Item>& items,
                              const std::map<TopicPartition, std::int64_t>& excluded_from) {
    BatchResult res;
    std::vector<Item*> included;
    for (auto& item : items) {
      const auto ex = excluded_from.find({item.msg.topic, item.msg.partition});
      if (ex == excluded_from.end() || item.msg.offset < ex->second) included.push_back(&item);
    }
    pqxx::work tx(*db, "txbox_inbox");
    const auto fresh = insert_inbox_rows(tx, included);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < included.size(); ++i) {
      Item& item = *included[i];
      const TopicPartition tp{item.msg.topic, item.msg.partition};
      const bool is_new = fresh.contains(item.msg.id) && seen.insert(item.msg.id).second;
      if (!is_new) {
        ++res.duplicates;
      } else if (item.dead) {
        insert_dead(tx, item);
        ++res.dead;
      } else {
        const auto t0 = clock::now();
        try {
          handler(tx, item.msg);
        } catch (const pqxx::broken_connection&) {
          throw;
        } catch (const std::exception& e) {
          res.failure = HandlerFailure{static_cast<std::size_t>(&item - items.data()),
                                       storable_text(e.what())};
          return res;  // tx rolls back
        } catch (...) {
          res.failure = HandlerFailure{static_cast<std::size_t>(&item - items.data()),
                                       "handler threw a non-standard exception"};
          return res;
        }
        observe_latency(std::chrono::duration<double>(clock::now() - t0).count());
        ++res.processed;
      }
      res.next[tp] = item.msg.offset + 1;
    }
    upsert_offsets(tx, res.next);
    if (rd_kafka_assignment_lost(rk.get())) {
      // The group moved on without us (e.g. a handler outlived max.poll.interval.ms): the
      // new owner processes these; committing would only race it.
      res.lost_assignment = true;
      return res;
    }
    tx.commit();
    return res;
  }

  std::size_t process() {
    if (collected.empty()) return 0;
    std::vector<Item> items;
    items.reserve(collected.size());
    for (const auto& m : collected) items.push_back(Item{to_received(m.get())});
    collected.clear();

    std::map<TopicPartition, std::int64_t> excluded_from;  // partition -> first offset held back
    std::map<TopicPartition, std::int64_t> first_offset;
    for (auto& item : items) {
      const TopicPartition tp{item.msg.topic, item.msg.partition};
      first_offset.try_emplace(tp, item.msg.offset);
      const auto& state = parts[tp];
      if (state.failing_offset == item.msg.offset) item.msg.attempt = state.attempts + 1;
    }
    std::vector<std::pair<TopicPartition, std::int64_t>> retry_at;  // seek back after commit
    BatchResult res;
    try {
      for (;;) {
        res = run_transaction(items, excluded_from);
        if (!res.failure) break;
        Item& bad = items[res.failure->index];
        const TopicPartition tp{bad.msg.topic, bad.msg.partition};
        auto& state = parts[tp];
        if (state.failing_offset != bad.msg.offset) {
          state.failing_offset = bad.msg.offset;
          state.attempts = 0;
        }
        ++state.attempts;
        {
          std::lock_guard lock(stats_mutex);
          ++st.failures;
        }
        if (cfg.on_failure == FailurePolicy::dead_letter && state.attempts >= cfg.max_attempts) {
          bad.dead = true;
          bad.dead_error = res.failure->error;
          bad.dead_attempts = state.attempts;
          spdlog::warn(
              "inbox {}: message {} ({} offset {}) failed {} times, moved to "
              "inbox_dead: {}",
              cfg.name, bad.msg.id, tp_text(tp), bad.msg.offset, state.attempts,
              res.failure->error);
        } else {
          excluded_from[tp] = bad.msg.offset;
          retry_at.emplace_back(tp, bad.msg.offset);
          if (state.attempts >= cfg.max_attempts && !state.blocked) {
            state.blocked = true;
            spdlog::warn("inbox {}: {} blocked at offset {} (policy block): {}", cfg.name,
                         tp_text(tp), bad.msg.offset, res.failure->error);
          }
        }
      }
    } catch (const pqxx::broken_connection& e) {
      lost_database(e.what());
      return 0;
    } catch (const pqxx::in_doubt_error& e) {
      lost_database(e.what());
      return 0;
    }
    if (res.lost_assignment) {
      spdlog::warn(
          "inbox {}: assignment lost during a batch; rolled back, the new owner "
          "processes it",
          cfg.name);
      return 0;
    }
    for (const auto& [tp, next] : res.next) {
      auto it = parts.find(tp);
      if (it == parts.end()) continue;
      it->second.next_offset = std::max(it->second.next_offset, next);
      if (it->second.failing_offset >= 0 && it->second.failing_offset < next) {
        if (it->second.blocked) {
          spdlog::info("inbox {}: {} unblocked", cfg.name, tp_text(tp));
        }
        it->second.failing_offset = -1;
        it->second.attempts = 0;
        it->second.blocked = false;
      }
    }
    // Failed partitions: fetch again from the failed message once the backoff has passed.
    for (const auto& [tp, offset] : retry_at) {
      auto& state = parts[tp];
      state.next_offset = offset;
      state.resume_at = clock::now() + retry_delay(state.attempts);
      pause({tp});
    }
    seek(retry_at);
    mirror_offsets(res.next);
    {
      std::lock_guard lock(stats_mutex);
      st.processed += res.processed;
      st.duplicates += res.duplicates;
      st.dead += res.dead;
      ++st.batches;
    }
    return res.processed + res.duplicates + res.dead;
  }

  // Kafka's committed offsets follow PostgreSQL's for lag tools; nothing reads them back.
  void mirror_offsets(const std::map<TopicPartition, std::int64_t>& next) {
    if (next.empty()) return;
    detail::partition_list_ptr list(
        rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
    for (const auto& [tp, offset] : next) {
      rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset =
          offset;
    }
    rd_kafka_commit(rk.get(), list.get(), 1);
  }

  // ---- housekeeping ----
  void resume_due() {
    std::vector<TopicPartition> due;
    const auto now = clock::now();
    for (const auto& [tp, state] : parts) {
      if (state.paused && state.resume_at <= now && !offsets_unknown.contains(tp)) {
        due.push_back(tp);
      }
    }
    if (db_up) resume(due);
  }

  void requeue_dead() {
    if (clock::now() < next_requeue) return;
    next_requeue = clock::now() + cfg.requeue_interval;
    pqxx::work tx(*db, "txbox_requeue");
    const auto rows = tx.exec_params(
        "SELECT id, message_id, topic, \"partition\", \"offset\", key, payload, headers::text, "
        "attempts FROM " +
            s +
            ".inbox_dead WHERE consumer = $1 AND requeued_at IS NOT NULL ORDER BY id LIMIT 100 "
            "FOR UPDATE SKIP LOCKED",
        cfg.name);
    if (rows.empty()) return;
    std::size_t ok = 0;
    for (const auto& row : rows) {
      ReceivedMessage m;
      m.id = row[1].as<std::string>();
      m.topic = row[2].as<std::string>();
      m.partition = row[3].as<std::int32_t>();
      m.offset = row[4].as<std::int64_t>();
      if (!row[5].is_null()) m.key = pqxx::binarystring(row[5]).str();
      m.payload = pqxx::binarystring(row[6]).str();
      m.headers = detail::headers_from_json(row[7].as<std::string>());
      m.attempt = row[8].as<int>() + 1;
      tx.exec0("SAVEPOINT txbox_requeue");
      try {
        handler(tx, m);
        tx.exec0("RELEASE SAVEPOINT txbox_requeue");
        tx.exec_params("DELETE FROM " + s + ".inbox_dead WHERE id = $1", row[0].as<std::int64_t>());
        ++ok;
      } catch (const pqxx::broken_connection&) {
        throw;
      } catch (const std::exception& e) {
        tx.exec0("ROLLBACK TO SAVEPOINT txbox_requeue");
        tx.exec_params("UPDATE " + s +
                           ".inbox_dead SET requeued_at = NULL, attempts = attempts + 1, "
                           "error = $2, failed_at = now() WHERE id = $1",
                       row[0].as<std::int64_t>(), std::string(e.what()));
      }
    }
    tx.commit();
    spdlog::info("inbox {}: requeued dead messages: {} processed, {} failed again", cfg.name, ok,
                 rows.size() - ok);
    std::lock_guard lock(stats_mutex);
    st.requeued += ok;
    st.processed += ok;
  }

  void cleanup() {
    if (clock::now() < next_cleanup) return;
    next_cleanup = clock::now() + cfg.cleanup_interval;
    std::uint64_t total = 0;
    // Short autocommit DELETEs by primary key: no long locks, no long transaction.
    for (int round = 0; round < 100; ++round) {
      pqxx::nontransaction tx(*db, "txbox_cleanup");
      const auto r = tx.exec_params(
          "DELETE FROM " + s + ".inbox i USING (SELECT message_id FROM " + s +
              ".inbox WHERE consumer = $1 AND processed_at < now() - make_interval(hours => $2) "
              "LIMIT $3) old WHERE i.consumer = $1 AND i.message_id = old.message_id",
          cfg.name, static_cast<int>(cfg.retention.count()), cfg.cleanup_batch);
      total += r.affected_rows();
      if (r.affected_rows() < static_cast<std::size_t>(cfg.cleanup_batch)) break;
    }
    if (total > 0) {
      spdlog::info("inbox {}: retention removed {} inbox rows older than {} h", cfg.name, total,
                   cfg.retention.count());
    }
    std::lock_guard lock(stats_mutex);
    st.cleaned += total;
  }

  void update_lag() {
    std::map<std::string, std::int64_t> lag;
    for (const auto& [tp, state] : parts) {
      std::int64_t lo = 0, hi = 0;
      if (state.next_offset < 0 ||
          rd_kafka_get_watermark_offsets(rk.get(), tp.topic.c_str(), tp.partition, &lo, &hi) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          hi < 0) {
        continue;
      }
      lag[tp_text(tp)] = std::max<std::int64_t>(hi - state.next_offset, 0);
    }
    std::lock_guard lock(stats_mutex);
    st.lag = std::move(lag);
  }

  // While every broker is down, a cheap metadata request every few seconds tells when one is
  // back (an idle consumer sees no message that would say so).
  void check_kafka() {
    if (!kafka_down || clock::now() < next_kafka_check) return;
    next_kafka_check = clock::now() + 3s;
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk.get(), 0, nullptr, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      detail::metadata_ptr owned(md);
      kafka_reachable();
    }
  }

  std::size_t poll_once(std::chrono::milliseconds timeout) {
    if (closed) throw error("txbox::Consumer::poll_once called after the consumer was closed");
    char reason[512];
    if (rd_kafka_fatal_error(rk.get(), reason, sizeof reason) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw error(fmt::format("inbox {}: fatal Kafka error, the consumer must be recreated: {}",
                              cfg.name, reason));
    }
    check_kafka();
    try_reconnect();
    std::size_t handled = 0;
    try {
      recover_offsets();
      resume_due();
      collect(db_up ? timeout : std::min(timeout, 100ms));
      if (db_up) handled = process();
      if (db_up) requeue_dead();
      if (db_up) cleanup();
    } catch (const pqxx::broken_connection& e) {
      lost_database(e.what());
    } catch (const pqxx::in_doubt_error& e) {
      lost_database(e.what());
    }
    update_lag();
    return handled;
  }
};

Consumer::Consumer(ConsumerConfig config, Handler handler)
    : m_impl(std::make_unique<impl>(std::move(config), std::move(handler))) {}

Consumer::~Consumer() = default;

void Consumer::run(std::stop_token stop) {
  spdlog::info("inbox {}: consuming {}", m_impl->cfg.name, fmt::join(m_impl->cfg.topics, ", "));
  while (!stop.stop_requested()) m_impl->poll_once(200ms);
  m_impl->close();
  spdlog::info("inbox {}: stopped", m_impl->cfg.name);
}

void Consumer::run() {
  struct sigaction act {};
  struct sigaction old_int {};
  struct sigaction old_term {};
  act.sa_handler = &on_stop_signal;
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, &old_int);
  sigaction(SIGTERM, &act, &old_term);
  g_signalled = 0;
  std::stop_source source;
  std::jthread watcher([&source](std::stop_token own) {
    while (!own.stop_requested() && !g_signalled) std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  run(source.get_token());
  watcher.request_stop();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

std::size_t Consumer::poll_once(std::chrono::milliseconds timeout) {
  return m_impl->poll_once(timeout);
}

std::string Consumer::metrics_text() const {
  const ConsumerStats st = stats();
  const std::string consumer = "consumer=\"" + detail::prom_label(m_impl->cfg.name) + "\"";
  detail::PromText p;
  const auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    p.metric(name, "counter", help, consumer, std::to_string(v));
  };
  counter("txbox_inbox_processed_total", "Messages whose handler committed.", st.processed);
  counter("txbox_inbox_duplicates_total", "Messages skipped: already in the inbox.", st.duplicates);
  counter("txbox_inbox_dead_total", "Messages moved to inbox_dead.", st.dead);
  counter("txbox_inbox_handler_failures_total", "Handler runs that threw.", st.failures);
  counter("txbox_inbox_requeued_total", "Dead messages processed after a requeue.", st.requeued);
  counter("txbox_inbox_rebalances_total", "Partition assignments and revocations.", st.rebalances);
  counter("txbox_inbox_retention_deleted_total", "Inbox rows removed by retention.", st.cleaned);
  p.metric("txbox_inbox_ready", "gauge", "1 when the database and Kafka are reachable.", consumer,
           st.ready ? "1" : "0");
  p.header("txbox_inbox_lag_messages", "gauge", "Messages behind the partition's end.");
  for (const auto& [tp, lag] : st.lag) {
    const auto slash = tp.rfind('/');
    p.sample("txbox_inbox_lag_messages",
             fmt::format("{},topic=\"{}\",partition=\"{}\"", consumer, tp.substr(0, slash),
                         tp.substr(slash + 1)),
             std::to_string(lag));
  }
  p.histogram("txbox_inbox_handler_seconds", "Handler run time.", consumer,
              st.handler_latency_buckets, st.handler_latency_counts, st.handler_latency_count,
              st.handler_latency_sum);
  return p.str();
}

ConsumerStats Consumer::stats() const {
  std::lock_guard lock(m_impl->stats_mutex);
  return m_impl->st;
}

}  // namespace txbox
