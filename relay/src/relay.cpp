// The publish loop: leases -> claim -> produce -> delivery reports -> fenced delete.
#include "txbox/relay.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "durability.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/log_throttle.hpp"
#include "txbox/detail/prometheus.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/detail/schema_check.hpp"
#include "txbox/message.hpp"

namespace txbox {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int k_shards = 64;

// Memory per message besides its payload, key and headers, counted against
// Backlog rows counted exactly; above this the gauge is PostgreSQL's estimate.
constexpr std::int64_t k_backlog_exact = 100'000;

// RelayConfig::max_batch_bytes: the claimed row (~200 B) and its copy in librdkafka with its
// headers (~700 B), as measured with valgrind --tool=massif.
constexpr std::int64_t k_row_overhead = 1024;

// Latency histogram bounds (seconds) for commit -> ack.
const std::vector<double> k_buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10,   30};

struct Row {
  std::int64_t id = 0;
  std::string message_id;
  std::string topic;
  std::optional<std::string> key;
  std::string payload;
  std::string headers;  // JSON array of [name, value]
  double created_epoch = 0;
  int shard = 0;
  int attempts = 0;
};

// Outcome of one produced row, filled by the delivery-report callback.
struct Delivery {
  bool done = false;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string error;
  bool held = false;     // not produced: its topic failed the strict durability check
  bool skipped = false;  // not produced: the leases would expire before its ack could come
};

// A topic's durability, as last checked.
struct TopicCheck {
  enum class state { unknown, durable, weak } st = state::unknown;
  clock::time_point recheck_at{};
  std::string why;  // for outbox.last_error of a held row
};

// Under strict durability a weak topic is looked at again after this (an operator may have
// fixed it); a topic whose check failed (broker unreachable), sooner.
constexpr auto k_recheck_weak = 30s;
constexpr auto k_recheck_unknown = 5s;
// Without strict durability a failed check only delays a warning: the publish loop, which
// waits for each check, asks again rarely.
constexpr auto k_recheck_relaxed = 5min;
// The admin requests at start: nothing waits on them yet.
constexpr auto k_start_admin_timeout = 10s;
// On stop, unacknowledged messages get this long before they are given up.
constexpr auto k_stop_grace = 5s;

// Errors that retrying cannot fix: the row goes to outbox_dead.
bool is_permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

std::string int_array(const std::vector<std::int64_t>& v) {
  return fmt::format("{{{}}}", fmt::join(v, ","));
}

std::string default_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format("{}:{}", host, ::getpid());
}

class notify_flag : public pqxx::notification_receiver {
 public:
  notify_flag(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string&, int) override { fired = true; }
  bool fired = false;
};

}  // namespace

struct Relay::impl {
  RelayConfig cfg;
  std::string s;  // quoted schema
  std::string name;
  std::unique_ptr<pqxx::connection> db;
  std::unique_ptr<notify_flag> listener;
  detail::kafka_ptr producer;
  detail::kafka_ptr admin;             // durability checks (metadata, DescribeConfigs)
  std::vector<Delivery> deliveries;    // indexed by msg_opaque during one batch
  std::map<int, std::int64_t> leases;  // shard -> epoch
  std::map<std::string, TopicCheck> topic_checks;
  clock::time_point lease_valid_until{};
  clock::time_point next_lease_tick{};
  bool joined = false;  // heartbeat registered once (start-up waits one round before taking)
  std::mt19937_64 rng{std::random_device{}()};

  mutable std::mutex stats_mutex;
  RelayStats st;
  bool db_up = false;
  bool broker_ok = true;

  // ---- logging of state changes (one line per change, never per message) ----
  void set_db_up(bool up, const std::string& why = {}) {
    if (up == db_up) return;
    db_up = up;
    if (up) {
      spdlog::info("database: connected ({})", redact_conninfo(cfg.database_url));
    } else {
      spdlog::warn("database: unreachable, retrying with backoff: {}", why);
    }
    update_ready();
  }
  void set_broker_ok(bool ok, const std::string& why = {}) {
    if (ok == broker_ok) return;
    broker_ok = ok;
    if (ok) {
      spdlog::info("kafka: deliveries succeed again");
    } else {
      spdlog::warn("kafka: deliveries failing, retrying with backoff: {}", why);
    }
    update_ready();
  }
  void update_ready() {
    std::lock_guard lock(stats_mutex);
    st.ready = db_up && broker_ok;
  }

  // ---- database ----
  void connect() {
    db = std::make_unique<pqxx::connection>(cfg.database_url);
    // A relay stalled inside a transaction (SIGSTOP, a pause past its lease) must not keep
    // row locks that block the new owner's delete, nor commit that delete late: the server
    // ends such a session, the transaction rolls back and the relay reconnects.
    pqxx::nontransaction(*db).exec_params(
        "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
        std::to_string(std::max<long>(500, cfg.lease_ttl.count() / 2)));
    check_schema();
    if (cfg.listen_notify) listener = std::make_unique<notify_flag>(*db, cfg.schema + ".outbox");
    set_db_up(true);
  }

  void check_schema() {
    detail::check_schema_version(*db, cfg.schema, relay_schema_version, "txbox_relay",
                                 "txbox-relay");
  }

  // ---- kafka ----
  // librdkafka's warnings and errors; it repeats one per reconnect attempt while a broker
  // is down, so a line that only differs in its numbers is logged once a minute.
  static void log_rdkafka(const rd_kafka_t*, int level, const char* fac, const char* buf) {
    if (level > 4) return;
    static detail::LogThrottle throttle;
    const auto line = throttle.admit(fmt::format("librdkafka {}: {}", fac, buf));
    if (!line) return;
    if (level <= 3) {
      spdlog::error("{}", *line);
    } else {
      spdlog::warn("{}", *line);
    }
  }

  static void set_conf(rd_kafka_conf_t* conf, const std::string& k, const std::string& v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw config_error(fmt::format("kafka.{}: {}", k, err));
    }
  }

  void make_producer() {
    detail::conf_ptr conf(rd_kafka_conf_new());
    char err[512];
    auto set = [&](const std::string& k, const std::string& v) { set_conf(conf.get(), k, v); };
    // Defaults a user may override, then the user's keys, then what txbox enforces.
    set("linger.ms", "5");
    set("statistics.interval.ms", "0");
    // librdkafka's local queue holds at most one round of rows (the relay waits for their
    // acks before it claims again): size it like the round, not librdkafka's 1 GB default,
    // but so that the largest message the producer accepts always fits (else it would wait
    // for room forever).
    std::size_t max_message = 1'000'000;  // librdkafka's message.max.bytes default
    if (const auto it = cfg.kafka.find("message.max.bytes"); it != cfg.kafka.end()) {
      std::size_t v = 0;  // not a number: librdkafka refuses it below, naming the key
      std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
      max_message = std::max(max_message, v);
    }
    set("queue.buffering.max.kbytes",
        std::to_string(std::max(cfg.max_batch_bytes, 2 * max_message) / 1024 + 1));
    // A topic that does not exist (and may not be auto-created) fails its messages after this
    // rather than holding the whole batch for librdkafka's default 30 s.
    set("topic.metadata.propagation.max.ms",
        std::to_string(std::max<long>(1000, delivery_budget().count())));
    for (const auto& [k, v] : cfg.kafka) set(k, v);
    set("acks", "all");
    set("enable.idempotence", "true");
    // Never give up on a message once handed over (0: no timeout). librdkafka times queued
    // messages out one by one: a key's message could fail while a later one of the same key
    // still went out (a documented gap), and its retry would then land behind it. Without
    // timeouts each batch reaches Kafka gapless and in order; a stale copy (a relay resumed
    // after a stall) is an exact re-send that cannot overtake anything.
    set("message.timeout.ms", "0");
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(),
                                [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                                  auto* self = static_cast<impl*>(opaque);
                                  const auto idx = reinterpret_cast<std::uintptr_t>(m->_private);
                                  if (idx >= self->deliveries.size()) return;
                                  Delivery& d = self->deliveries[idx];
                                  d.done = true;
                                  d.err = m->err;
                                  // Not rd_kafka_message_errstr: for a producer message it returns
                                  // the payload.
                                  if (m->err) d.error = rd_kafka_err2str(m->err);
                                });
    rd_kafka_conf_set_log_cb(conf.get(), log_rdkafka);
    producer.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
    if (!producer) throw config_error(fmt::format("cannot create the Kafka producer: {}", err));
    conf.release();  // rd_kafka_new took ownership on success
  }

  // A second client, for the durability checks only: its metadata requests must not make
  // the broker auto-create a missing topic (with the broker's possibly weak defaults).
  void make_admin() {
    detail::conf_ptr conf(rd_kafka_conf_new());
    char err[512];
    for (const auto& [k, v] : cfg.kafka) set_conf(conf.get(), k, v);
    set_conf(conf.get(), "allow.auto.create.topics", "false");
    rd_kafka_conf_set_log_cb(conf.get(), log_rdkafka);
    admin.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
    if (!admin) throw config_error(fmt::format("cannot create the Kafka admin client: {}", err));
    conf.release();  // rd_kafka_new took ownership on success
  }

  // ---- durability of the target topics ----
  // The admin requests for a claimed batch: the batch's leases wait on them.
  std::chrono::milliseconds admin_timeout() const {
    return std::clamp<std::chrono::milliseconds>(cfg.lease_ttl / 3, 2s, 10s);
  }

  // Describes `names` and records the outcome; one log line per topic whose state changed
  // (weak topics are not logged when `quiet_weak`: the caller reports them).
  std::vector<detail::TopicDurability> check_topics(const std::vector<std::string>& names,
                                                    std::chrono::milliseconds timeout,
                                                    bool quiet_weak = false) {
    auto results = detail::describe_durability(admin.get(), names, timeout);
    const auto now = clock::now();
    for (const auto& d : results) {
      auto [it, fresh] = topic_checks.try_emplace(d.topic);
      TopicCheck& c = it->second;
      // An int, not std::optional<state>: g++ 12 -O2 warns (falsely) that the optional
      // may be used uninitialised.
      const int before = fresh ? -1 : static_cast<int>(c.st);
      const auto changed = [&] { return before != static_cast<int>(c.st); };
      const auto problems = d.problems();
      if (!d.checked) {
        c.st = TopicCheck::state::unknown;
        c.recheck_at = now + (cfg.strict_durability ? k_recheck_unknown : k_recheck_relaxed);
        c.why =
            fmt::format("the durability of topic '{}' could not be checked: {}", d.topic, d.error);
        if (changed()) {
          spdlog::warn("durability: could not check topic '{}' ({}); {}", d.topic, d.error,
                       cfg.strict_durability
                           ? "its messages wait in the outbox until a check succeeds"
                           : "publishing it anyway, checked again later");
        }
      } else if (problems.empty()) {
        c.st = TopicCheck::state::durable;
        if (changed()) {
          spdlog::info(
              "durability: topic '{}' ok (replication.factor={}, min.insync.replicas={}, "
              "unclean.leader.election.enable={})",
              d.topic, d.replication_factor, d.min_insync_replicas, d.unclean_leader_election);
        }
      } else {
        c.st = TopicCheck::state::weak;
        // Under strict durability an operator may fix the topic: look again now and then.
        c.recheck_at = cfg.strict_durability ? now + k_recheck_weak : clock::time_point::max();
        c.why = "held by strict durability: " + d.summary();
        if (changed() && !quiet_weak) {
          if (cfg.strict_durability) {
            spdlog::error(
                "durability: {}; its messages stay in the outbox (strict durability) and are "
                "retried with backoff. Hint: {}",
                d.summary(), d.hint());
          } else {
            spdlog::warn(
                "durability: {}; a broker failure can lose messages Kafka acknowledged. "
                "Hint: {}, or set relay.strict_durability to refuse such topics",
                d.summary(), d.hint());
          }
        }
      }
    }
    std::lock_guard lock(stats_mutex);
    st.weak_topics.clear();
    for (const auto& [t, c] : topic_checks) {
      if (c.st == TopicCheck::state::weak) st.weak_topics.insert(t);
    }
    return results;
  }

  // At start: the topics already in the outbox and those in relay.durability_topics. Under
  // strict durability a weak one refuses the start (durability_error names all of them).
  void check_durability_at_start() {
    std::set<std::string> names(cfg.durability_topics.begin(), cfg.durability_topics.end());
    {
      pqxx::nontransaction tx(*db);
      for (const auto& row : tx.exec("SELECT DISTINCT topic FROM " + s + ".outbox")) {
        names.insert(row[0].as<std::string>());
      }
    }
    if (names.empty()) return;
    const auto results = check_topics({names.begin(), names.end()}, k_start_admin_timeout,
                                      /*quiet_weak=*/cfg.strict_durability);
    std::vector<std::string> weak, hints;
    for (const auto& d : results) {
      if (d.problems().empty()) continue;
      weak.push_back(d.summary());
      hints.push_back(d.hint());
    }
    if (cfg.strict_durability && !weak.empty()) {
      throw durability_error(fmt::format(
          "refusing to start (strict durability): {}. A broker failure could lose messages "
          "Kafka acknowledged. Hint: {}; or turn off --strict-durability "
          "(relay.strict_durability)",
          fmt::join(weak, "; "), fmt::join(hints, "; ")));
    }
  }

  // Checks the topics of a claimed batch that were never checked, or are due for another look.
  void check_batch_topics(const std::vector<Row>& rows) {
    const auto now = clock::now();
    std::set<std::string> due;
    for (const auto& row : rows) {
      const auto it = topic_checks.find(row.topic);
      if (it == topic_checks.end() ||
          (it->second.st != TopicCheck::state::durable && now >= it->second.recheck_at)) {
        due.insert(row.topic);
      }
    }
    if (!due.empty()) check_topics({due.begin(), due.end()}, admin_timeout());
  }

  // Under strict durability a row is published only when its topic was checked and passed;
  // else the reason it is held.
  std::optional<std::string> hold_reason(const std::string& topic) const {
    if (!cfg.strict_durability) return std::nullopt;
    const auto it = topic_checks.find(topic);
    if (it == topic_checks.end()) {
      return fmt::format("held by strict durability: topic '{}' not checked yet", topic);
    }
    if (it->second.st == TopicCheck::state::durable) return std::nullopt;
    return it->second.why;
  }

  // ---- leases ----
  // A message is handed to Kafka only while the leases hold for this much longer: time for
  // its acknowledgement and the fenced delete before another relay may take the shard.
  std::chrono::milliseconds delivery_budget() const { return cfg.lease_ttl / 3; }
  bool lease_time_for_batch() const {
    return clock::now() + delivery_budget() <= lease_valid_until;
  }

  std::string interval(std::chrono::milliseconds ms) const {
    return std::to_string(ms.count()) + " milliseconds";
  }

  void lease_tick() {
    const auto sent = clock::now();
    pqxx::work tx(*db);
    tx.exec_params("INSERT INTO " + s +
                       ".outbox_relays (name, seen_at) VALUES ($1, now()) "
                       "ON CONFLICT (name) DO UPDATE SET seen_at = now()",
                   name);
    if (!joined) {
      // Start-up: be counted first, take shards one heartbeat round later. Relays started
      // together then all see each other, and the first does not grab all 64 shards only to
      // hand most of them back a round later.
      tx.commit();
      joined = true;
      next_lease_tick = clock::now() + cfg.lease_ttl / 3;
      spdlog::info("leases: joined; taking a fair share of the shards in {} ms",
                   (cfg.lease_ttl / 3).count());
      return;
    }
    const int live = tx.exec_params1("SELECT count(*) FROM " + s +
                                         ".outbox_relays WHERE seen_at > now() - $1::interval",
                                     interval(cfg.lease_ttl))[0]
                         .as<int>();
    const int target = (k_shards + std::max(live, 1) - 1) / std::max(live, 1);

    // Renew what we hold (by shard and epoch: a lease taken over meanwhile is not renewed).
    std::vector<std::int64_t> shards, epochs;
    for (const auto& [sh, ep] : leases) {
      shards.push_back(sh);
      epochs.push_back(ep);
    }
    std::map<int, std::int64_t> kept;
    if (!shards.empty()) {
      const auto r =
          tx.exec_params("UPDATE " + s +
                             ".outbox_leases x SET expires_at = now() + $2::interval "
                             "FROM unnest($3::int[], $4::bigint[]) AS l(shard, epoch) "
                             "WHERE x.shard = l.shard AND x.epoch = l.epoch AND x.owner = $1 "
                             "AND x.expires_at > now() RETURNING x.shard, x.epoch",
                         name, interval(cfg.lease_ttl), int_array(shards), int_array(epochs));
      for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
    }
    std::size_t changes = leases.size() - kept.size();
    if (changes > 0) spdlog::warn("leases: lost {} shard(s) to other relays", changes);

    // Give back what exceeds our fair share, take free or expired shards up to it.
    if (static_cast<int>(kept.size()) > target) {
      std::vector<std::int64_t> extra;
      for (auto it = kept.rbegin();
           it != kept.rend() && static_cast<int>(kept.size() - extra.size()) > target; ++it) {
        extra.push_back(it->first);
      }
      tx.exec_params("UPDATE " + s +
                         ".outbox_leases SET owner = NULL, expires_at = '-infinity' "
                         "WHERE owner = $1 AND shard = ANY($2::int[])",
                     name, int_array(extra));
      for (auto sh : extra) kept.erase(static_cast<int>(sh));
      changes += extra.size();
    } else if (static_cast<int>(kept.size()) < target) {
      const auto r = tx.exec_params(
          "UPDATE " + s +
              ".outbox_leases x SET owner = $1, epoch = x.epoch + 1, "
              "expires_at = now() + $2::interval WHERE (x.owner IS NULL OR x.expires_at <= now()) "
              "AND x.shard IN (SELECT shard FROM " +
              s +
              ".outbox_leases WHERE owner IS NULL OR "
              "expires_at <= now() ORDER BY random() LIMIT $3 FOR UPDATE SKIP LOCKED) "
              "RETURNING x.shard, x.epoch",
          name, interval(cfg.lease_ttl), target - static_cast<int>(kept.size()));
      for (const auto& row : r) kept[row[0].as<int>()] = row[1].as<std::int64_t>();
      changes += r.size();
    }
    tx.commit();
    if (changes > 0 || kept.size() != leases.size()) {
      spdlog::info("leases: {} of {} shards owned ({} live relay(s))", kept.size(), k_shards, live);
    }
    leases = std::move(kept);
    // Our view of the leases is safe until a fifth of the ttl before they expire.
    lease_valid_until = sent + cfg.lease_ttl - cfg.lease_ttl / 5;
    next_lease_tick = clock::now() + cfg.lease_ttl / 3;
    std::lock_guard lock(stats_mutex);
    st.lease_changes += changes;
    st.shards_owned = leases.size();
  }

  void release_leases() noexcept {
    if (!db || leases.empty()) return;
    try {
      std::vector<std::int64_t> shards;
      for (const auto& [sh, ep] : leases) shards.push_back(sh);
      pqxx::work tx(*db);
      tx.exec_params("UPDATE " + s +
                         ".outbox_leases SET owner = NULL, expires_at = '-infinity' "
                         "WHERE owner = $1 AND shard = ANY($2::int[])",
                     name, int_array(shards));
      tx.exec_params("DELETE FROM " + s + ".outbox_relays WHERE name = $1", name);
      tx.commit();
      spdlog::info("leases: released {} shard(s)", leases.size());
      leases.clear();
    } catch (const std::exception& e) {
      spdlog::warn("leases: could not release ({}); they expire by themselves", e.what());
    }
  }

  // ---- claim / publish / settle ----
  std::vector<Row> claim() {
    std::vector<std::int64_t> shards, epochs;
    for (const auto& [sh, ep] : leases) {
      shards.push_back(sh);
      epochs.push_back(ep);
    }
    pqxx::work tx(*db);
    const auto r = tx.exec_params(
        "SELECT o.id, o.message_id::text, o.topic, o.key, o.payload, o.headers::text, "
        "extract(epoch FROM o.created_at)::float8, o.shard, o.attempts, "
        "coalesce(o.next_attempt_at > now(), false) "
        "FROM unnest($1::int[], $2::bigint[]) AS l(shard, epoch) "
        "JOIN " +
            s +
            ".outbox_leases x ON x.shard = l.shard AND x.epoch = l.epoch "
            "AND x.owner = $3 AND x.expires_at > now() "
            // Each shard's head, up to batch_size rows and its share of max_batch_bytes (at
            // least one row): `run` is the bytes of the rows up to this one.
            "CROSS JOIN LATERAL (SELECT * FROM (SELECT h.*, sum(h.sz) OVER (ORDER BY h.id) "
            "AS run FROM (SELECT *, octet_length(payload) + coalesce(octet_length(key), 0) + "
            "pg_column_size(headers) + $6 AS sz FROM " +
            s +
            ".outbox WHERE shard = l.shard AND published_at IS NULL ORDER BY id LIMIT $4) h) w "
            "WHERE w.run <= $5 OR w.run = w.sz) o ORDER BY o.shard, o.id",
        int_array(shards), int_array(epochs), name, cfg.batch_size,
        static_cast<std::int64_t>(cfg.max_batch_bytes / std::max<std::size_t>(shards.size(), 1)),
        k_row_overhead);
    tx.commit();
    std::vector<Row> rows;
    rows.reserve(r.size());
    int waiting_shard = -1;
    for (const auto& f : r) {
      const int shard = f[7].as<int>();
      // A shard whose head waits for its retry time waits whole: nothing overtakes it.
      if (shard == waiting_shard) continue;
      if (f[9].as<bool>()) {
        waiting_shard = shard;
        continue;
      }
      Row row;
      row.id = f[0].as<std::int64_t>();
      row.message_id = f[1].as<std::string>();
      row.topic = f[2].as<std::string>();
      if (!f[3].is_null()) row.key = f[3].as<std::string>();
      row.payload = pqxx::binarystring(f[4]).str();
      row.headers = f[5].as<std::string>();
      row.created_epoch = f[6].as<double>();
      row.shard = shard;
      row.attempts = f[8].as<int>();
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // Hands the rows to librdkafka, in id order per shard. librdkafka copies what it sends:
  // a handed-over row keeps only what settle needs.
  void produce(std::vector<Row>& rows) {
    check_batch_topics(rows);
    deliveries.assign(rows.size(), Delivery{});
    int stopped_shard = -1;
    std::set<std::string> unknown_topics;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      Row& row = rows[i];
      // After a held row or a local transient failure its shard's later rows are not sent:
      // they would overtake it (settle leaves them untouched for the next round).
      if (row.shard == stopped_shard) {
        deliveries[i] = {true, RD_KAFKA_RESP_ERR__STATE, "waits behind its shard's head", false,
                         true};
        continue;
      }
      if (auto why = hold_reason(row.topic)) {
        deliveries[i] = {true, RD_KAFKA_RESP_ERR__STATE, std::move(*why), true};
        stopped_shard = row.shard;
        continue;
      }
      detail::headers_ptr hdrs(rd_kafka_headers_new(8));
      rd_kafka_header_add(hdrs.get(), headers::id, -1, row.message_id.data(),
                          static_cast<ssize_t>(row.message_id.size()));
      try {
        for (const auto& pair : nlohmann::json::parse(row.headers)) {
          const auto& k = pair.at(0).get_ref<const std::string&>();
          const auto& v = pair.at(1).get_ref<const std::string&>();
          if (k == headers::id) continue;
          rd_kafka_header_add(hdrs.get(), k.data(), static_cast<ssize_t>(k.size()), v.data(),
                              static_cast<ssize_t>(v.size()));
        }
      } catch (const std::exception& e) {
        deliveries[i] = {
            true, RD_KAFKA_RESP_ERR__INVALID_ARG,
            std::string("outbox.headers is not an array of [name, value]: ") + e.what()};
        continue;
      }
      const void* key = row.key ? row.key->data() : nullptr;
      const std::size_t key_len = row.key ? row.key->size() : 0;
      rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
      bool lease_short = false;
      while (true) {
        // Checked right before every hand-over: a relay that stalled (SIGSTOP, a long pause)
        // since the claim may have lost the shard and must not publish after the new owner.
        if (!lease_time_for_batch()) {
          lease_short = true;
          break;
        }
        // The analyzer takes rows[i] of a later iteration for this one, whose strings are
        // released below only after librdkafka copied them (RD_KAFKA_MSG_F_COPY).
        // NOLINTNEXTLINE(clang-analyzer-cplusplus.InnerPointer)
        code = rd_kafka_producev(
            producer.get(), RD_KAFKA_V_TOPIC(row.topic.c_str()), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE(const_cast<char*>(row.payload.data()), row.payload.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs.get()),
            RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(i))),
            RD_KAFKA_V_END);
        if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        rd_kafka_poll(producer.get(), 10);  // wait for room in the local queue
      }
      if (lease_short) {
        for (std::size_t j = i; j < rows.size(); ++j) {
          deliveries[j] = {true, RD_KAFKA_RESP_ERR__STATE, "lease about to expire", false, true};
        }
        spdlog::warn(
            "leases: {} claimed row(s) not sent: the leases would expire before Kafka could "
            "acknowledge them (the relay stalled, or Kafka was slow to take them); they go out "
            "in a later round",
            rows.size() - i);
        next_lease_tick = clock::now();
        break;
      }
      if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
        hdrs.release();  // rd_kafka_producev took the headers on success
        std::string().swap(row.payload);
        std::string().swap(row.headers);
        std::string().swap(row.message_id);
        row.key.reset();
      } else {
        deliveries[i] = {true, code, rd_kafka_err2str(code)};
        if (!is_permanent(code)) stopped_shard = row.shard;
        if (code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
            code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
          unknown_topics.insert(row.topic);
        }
      }
    }
    // librdkafka remembers that a topic does not exist and refuses it locally until its next
    // periodic metadata refresh (5 min): ask now, so a topic created meanwhile is used at the
    // rows' next attempt.
    for (const auto& topic : unknown_topics) refresh_metadata(topic);
  }

  void refresh_metadata(const std::string& topic) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(producer.get(), topic.c_str(), nullptr);
    if (!t) return;
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_metadata(producer.get(), 0, t, &md, static_cast<int>(admin_timeout().count()));
    rd_kafka_topic_destroy(t);
    const detail::metadata_ptr owned(md);  // set only on success
  }

  // Waits for every delivery report: librdkafka retries until Kafka acknowledges or refuses
  // a message for good. Only a stop gives up, after a grace period: what is purged then may
  // still have reached Kafka (re-sent by the next owner) but nothing of this relay follows it.
  void await_deliveries(const std::stop_token& stop) {
    const auto all_done = [&] {
      return std::all_of(deliveries.begin(), deliveries.end(),
                         [](const Delivery& d) { return d.done; });
    };
    const auto started = clock::now();
    std::optional<clock::time_point> stop_seen;
    bool slow = false, purged = false;
    while (!all_done()) {
      // flush, not poll: the round is handed over whole, so linger.ms would only delay it
      // (librdkafka ignores linger.ms during a flush and sends what is queued at once).
      rd_kafka_flush(producer.get(), 50);
      const auto now = clock::now();
      if (!slow && now - started > cfg.lease_ttl) {
        slow = true;
        set_broker_ok(false, fmt::format("no acknowledgement for {} ms (broker unreachable or "
                                         "slow); waiting for it",
                                         cfg.lease_ttl.count()));
      }
      // After a fatal error librdkafka delivers nothing more: fail what is left at once (it
      // is retried by a new producer, see replace_failed_producer).
      if (!purged && producer_fatal()) {
        rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        purged = true;
      }
      if (stop.stop_requested() && !purged) {
        if (!stop_seen) stop_seen = now;
        if (now - *stop_seen >= k_stop_grace) {
          spdlog::warn("stopping: giving up on {} unacknowledged message(s) after {} s",
                       std::count_if(deliveries.begin(), deliveries.end(),
                                     [](const Delivery& d) { return !d.done; }),
                       std::chrono::duration_cast<std::chrono::seconds>(k_stop_grace).count());
          rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
          purged = true;
        }
      }
    }
  }

  // The producer's fatal error, if it raised one (the idempotent producer lost its
  // guarantees, e.g. its sequence numbers no longer match the broker's).
  std::optional<std::string> producer_fatal() const {
    char reason[512];
    if (rd_kafka_fatal_error(producer.get(), reason, sizeof reason) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::nullopt;
    }
    return std::string(reason);
  }

  // A producer with a fatal error can never produce again: replace it. Called between
  // batches, when none of its messages is outstanding; their rows were settled as transient
  // failures and go out again through the new producer, from each shard's head.
  void replace_failed_producer() {
    const auto reason = producer_fatal();
    if (!reason) return;
    spdlog::error(
        "kafka: the producer hit a fatal error ({}); replacing it with a new one, "
        "unacknowledged messages are sent again",
        *reason);
    rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(producer.get(), 0);  // serve what the purge reported (no row waits on it)
    producer.reset();                  // may block briefly while its threads stop
    make_producer();
    std::lock_guard lock(stats_mutex);
    ++st.producer_restarts;
  }

  std::chrono::milliseconds backoff(int attempts) {
    const double base =
        static_cast<double>(cfg.retry_backoff_min.count()) * std::pow(2.0, std::min(attempts, 20));
    const double capped = std::min(base, static_cast<double>(cfg.retry_backoff_max.count()));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::chrono::milliseconds(static_cast<long>(capped * jitter(rng)));
  }

  // Deletes the acknowledged rows (fenced by lease epoch), dead-letters permanent failures,
  // schedules retries. Per shard, rows after a transient failure stay for the next round.
  void settle(const std::vector<Row>& rows) {
    std::vector<std::int64_t> done_ids, dead_ids;
    std::vector<std::string> dead_errors;
    std::vector<std::pair<const Row*, const Delivery*>> retry;
    std::size_t transient = 0;
    std::map<std::string, std::uint64_t> held;
    int blocked_shard = -1;
    std::string first_transient;
    std::map<std::string, std::uint64_t> published;
    const double now_epoch =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::vector<double> latencies;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& row = rows[i];
      const Delivery& d = deliveries[i];
      if (row.shard == blocked_shard || d.skipped) continue;
      if (d.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        done_ids.push_back(row.id);
        ++published[row.topic];
        latencies.push_back(now_epoch - row.created_epoch);
      } else if (d.held) {
        // Strict durability: like a transient failure (retry with backoff), never dead.
        blocked_shard = row.shard;
        retry.emplace_back(&row, &d);
        ++held[row.topic];
      } else if (is_permanent(d.err)) {
        dead_ids.push_back(row.id);
        dead_errors.push_back(d.error);
      } else {
        blocked_shard = row.shard;
        retry.emplace_back(&row, &d);
        ++transient;
        if (first_transient.empty()) first_transient = d.error;
      }
    }
    std::vector<std::int64_t> shards, epochs;
    for (const auto& [sh, ep] : leases) {
      shards.push_back(sh);
      epochs.push_back(ep);
    }
    const std::string fence =
        " AND EXISTS (SELECT 1 FROM " + s +
        ".outbox_leases x JOIN unnest($2::int[], "
        "$3::bigint[]) AS l(shard, epoch) ON x.shard = l.shard AND x.epoch = l.epoch "
        "WHERE x.shard = o.shard AND x.owner = $4 AND x.expires_at > now())";
    pqxx::work tx(*db);
    std::size_t deleted = 0;
    if (!done_ids.empty()) {
      deleted =
          tx.exec_params("DELETE FROM " + s + ".outbox o WHERE o.id = ANY($1::bigint[])" + fence,
                         int_array(done_ids), int_array(shards), int_array(epochs), name)
              .affected_rows();
    }
    std::size_t moved_dead = 0;  // the fence may leave some to the shard's new owner
    for (std::size_t i = 0; i < dead_ids.size(); ++i) {
      moved_dead +=
          tx.exec_params("WITH d AS (DELETE FROM " + s + ".outbox o WHERE o.id = $1" + fence +
                             " RETURNING *) INSERT INTO " + s +
                             ".outbox_dead (message_id, topic, key, payload, headers, created_at, "
                             "attempts, error) SELECT message_id, topic, key, payload, headers, "
                             "created_at, attempts + 1, $5 FROM d",
                         dead_ids[i], int_array(shards), int_array(epochs), name, dead_errors[i])
              .affected_rows();
    }
    for (const auto& [row, d] : retry) {
      tx.exec_params("UPDATE " + s +
                         ".outbox o SET attempts = attempts + 1, last_error = $5, "
                         "next_attempt_at = now() + $6::interval WHERE o.id = $1" +
                         fence,
                     row->id, int_array(shards), int_array(epochs), name, d->error,
                     interval(backoff(row->attempts)));
    }
    tx.commit();
    if (deleted != done_ids.size()) {
      // Another relay took over some shard: its rows stay for the new owner.
      spdlog::warn(
          "leases: a shard was taken over during a batch; {} acknowledged row(s) "
          "left for the new owner (they will be re-sent; the inbox absorbs them)",
          done_ids.size() - deleted);
      next_lease_tick = clock::now();
    }
    if (moved_dead > 0) {
      spdlog::error("{} message(s) moved to {}.outbox_dead; first error: {}", moved_dead,
                    cfg.schema, dead_errors.front());
    }
    // Rows held by strict durability say nothing about the broker.
    if (transient > 0 || !done_ids.empty() || !dead_ids.empty()) {
      set_broker_ok(transient == 0 || !done_ids.empty(), first_transient);
    }

    std::lock_guard lock(stats_mutex);
    for (const auto& [t, n] : published) st.published_by_topic[t] += n;
    for (const auto& [t, n] : held) st.held_by_topic[t] += n;
    st.dead += moved_dead;
    st.failed += transient;
    for (double l : latencies) {
      for (std::size_t b = 0; b < k_buckets.size(); ++b) {
        if (l <= k_buckets[b]) st.ack_latency_counts[b]++;
      }
      st.ack_latency_count++;
      st.ack_latency_sum += l;
    }
  }

  // The backlog gauges. Counting a large outbox would scan it (10M rows: seconds, every
  // refresh), so rows are counted exactly up to k_backlog_exact and estimated above it from
  // PostgreSQL's statistics; the oldest pending row is the head of the id index.
  void refresh_backlog() {
    pqxx::work tx(*db);
    const auto r = tx.exec_params(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM " + s +
            ".outbox WHERE published_at IS NULL LIMIT $1) c), "
            "coalesce(extract(epoch FROM now() - (SELECT created_at FROM " +
            s +
            ".outbox WHERE published_at IS NULL ORDER BY id LIMIT 1)), 0)::float8, "
            "(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($2))",
        k_backlog_exact + 1, s + ".outbox");
    tx.commit();
    std::int64_t rows = r[0][0].as<std::int64_t>();
    if (rows > k_backlog_exact) rows = std::max(rows, r[0][2].as<std::int64_t>(0));
    std::lock_guard lock(stats_mutex);
    st.backlog_rows = rows;
    st.oldest_pending_seconds = r[0][1].as<double>();
    st.producer_queue = producer ? rd_kafka_outq_len(producer.get()) : 0;
  }

  // Sleeps until a NOTIFY arrives, the poll interval passes, or stop is requested.
  void wait_for_work(const std::stop_token& stop, std::chrono::milliseconds max) {
    const auto until = clock::now() + max;
    while (!stop.stop_requested() && clock::now() < until) {
      const auto left = std::min<clock::duration>(until - clock::now(), 100ms);
      if (listener) {
        listener->fired = false;
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(left).count();
        db->await_notification(us / 1'000'000, us % 1'000'000);
        if (listener->fired) return;
      } else {
        std::this_thread::sleep_for(left);
      }
    }
  }
};

Relay::Relay(RelayConfig config) : m_impl(std::make_unique<impl>()) {
  validate_relay_config(config);
  auto& m = *m_impl;
  m.cfg = std::move(config);
  m.s = "\"" + m.cfg.schema + "\"";
  m.name = m.cfg.name.empty() ? default_name() : m.cfg.name;
  m.st.ack_latency_buckets = k_buckets;
  m.st.ack_latency_counts.assign(k_buckets.size(), 0);
  m.make_producer();
  m.make_admin();
  try {
    m.connect();
    m.check_durability_at_start();
  } catch (const pqxx::broken_connection& e) {
    throw transient_error(fmt::format("cannot connect to the database ({}): {}",
                                      redact_conninfo(m.cfg.database_url),
                                      libpq_error_text(e.what(), m.cfg.database_url)));
  }
}

Relay::~Relay() {
  m_impl->release_leases();
  if (m_impl->producer) rd_kafka_flush(m_impl->producer.get(), 5000);
}

void Relay::run(std::stop_token stop) {
  auto& m = *m_impl;
  spdlog::info("relay {}: publishing schema {} (batch {}, lease ttl {} ms, notify {})", m.name,
               m.cfg.schema, m.cfg.batch_size, m.cfg.lease_ttl.count(),
               m.cfg.listen_notify ? "on" : "off");
  auto reconnect_delay = m.cfg.retry_backoff_min;
  auto next_backlog = clock::now();
  while (!stop.stop_requested()) {
    try {
      if (!m.db || !m.db->is_open()) m.connect();
      // Renew early when the leases no longer cover a batch's delivery budget.
      if (clock::now() >= m.next_lease_tick || (!m.leases.empty() && !m.lease_time_for_batch())) {
        m.lease_tick();
      }
      m.replace_failed_producer();
      if (clock::now() >= next_backlog) {
        m.refresh_backlog();
        next_backlog = clock::now() + 1s;
      }
      if (m.leases.empty() || !m.lease_time_for_batch()) {
        m.wait_for_work(
            stop, std::min<std::chrono::milliseconds>(m.cfg.poll_interval, m.cfg.lease_ttl / 3));
        continue;
      }
      auto rows = m.claim();
      if (rows.empty()) {
        m.wait_for_work(
            stop, std::min<std::chrono::milliseconds>(
                      m.cfg.poll_interval, std::chrono::duration_cast<std::chrono::milliseconds>(
                                               m.next_lease_tick - clock::now())));
        continue;
      }
      m.produce(rows);
      m.await_deliveries(stop);
      m.settle(rows);
      reconnect_delay = m.cfg.retry_backoff_min;
    } catch (const pqxx::failure& e) {
      // Any other database error, including in_doubt_error (commit outcome unknown): start
      // over on a new connection after a pause. Nothing was deleted that Kafka did not
      // acknowledge; rows whose delete did not commit are re-sent and the inbox absorbs them.
      m.set_db_up(false, libpq_error_text(e.what(), m.cfg.database_url));
      m.listener.reset();
      m.db.reset();
      m.leases.clear();
      m.next_lease_tick = clock::now();
      std::this_thread::sleep_for(reconnect_delay);
      reconnect_delay = std::min(reconnect_delay * 2, m.cfg.retry_backoff_max);
    }
  }
  // Stop: the in-flight batch was settled above; give the shards back at once.
  m.release_leases();
  rd_kafka_flush(m.producer.get(), 5000);
  spdlog::info("relay {}: stopped", m.name);
}

RelayStats Relay::stats() const {
  std::lock_guard lock(m_impl->stats_mutex);
  return m_impl->st;
}

std::string Relay::metrics_text() const {
  const RelayStats st = stats();
  detail::PromText p;
  const auto topic = [](const std::string& t) { return "topic=\"" + detail::prom_label(t) + "\""; };
  p.header("txbox_relay_published_total", "counter",
           "Messages acknowledged by Kafka and removed from the outbox.");
  for (const auto& [t, n] : st.published_by_topic) {
    p.sample("txbox_relay_published_total", topic(t), std::to_string(n));
  }
  const auto metric = [&p](const char* name, const char* type, const char* help,
                           const std::string& value) { p.metric(name, type, help, "", value); };
  metric("txbox_relay_failed_total", "counter", "Transient delivery failures (retried).",
         std::to_string(st.failed));
  metric("txbox_relay_dead_total", "counter", "Messages moved to outbox_dead.",
         std::to_string(st.dead));
  metric("txbox_relay_lease_changes_total", "counter", "Shard leases taken, lost or released.",
         std::to_string(st.lease_changes));
  metric("txbox_relay_shards_owned", "gauge", "Shards this relay publishes.",
         std::to_string(st.shards_owned));
  metric("txbox_outbox_backlog_rows", "gauge",
         "Rows waiting in the outbox (exact up to 100000, above that PostgreSQL's estimate).",
         std::to_string(std::max<std::int64_t>(st.backlog_rows, 0)));
  metric("txbox_outbox_oldest_pending_seconds", "gauge", "Age of the oldest waiting row.",
         fmt::format("{:.3f}", st.oldest_pending_seconds));
  metric("txbox_relay_producer_queue", "gauge", "Messages in librdkafka's queue.",
         std::to_string(st.producer_queue));
  metric("txbox_relay_ready", "gauge", "1 when the database and Kafka are reachable.",
         st.ready ? "1" : "0");
  metric("txbox_relay_producer_restarts_total", "counter",
         "Kafka producers replaced after a fatal error.", std::to_string(st.producer_restarts));
  p.header("txbox_relay_topic_weak", "gauge",
           "1 for a target topic with replication.factor < 3, min.insync.replicas < 2 or "
           "unclean leader election.");
  for (const auto& t : st.weak_topics) p.sample("txbox_relay_topic_weak", topic(t), "1");
  p.header("txbox_relay_durability_held_total", "counter",
           "Rows kept in the outbox because their topic failed strict durability (per attempt).");
  for (const auto& [t, n] : st.held_by_topic) {
    p.sample("txbox_relay_durability_held_total", topic(t), std::to_string(n));
  }
  p.histogram("txbox_relay_commit_to_ack_seconds", "Time from outbox insert to Kafka ack.", "",
              st.ack_latency_buckets, st.ack_latency_counts, st.ack_latency_count,
              st.ack_latency_sum);
  return p.str();
}

}  // namespace txbox
