#include "workload.hpp"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <span>
#include <thread>

#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace chaos {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------
// The database side of the test: what was committed, what was applied.

namespace {

std::string key_name(int k) {
  return fmt::format("k{:04d}", k);
}

}  // namespace

void create_test_schema(const std::string& pg, int keys) {
  pqxx::connection c(pg);
  pqxx::work tx(c);
  tx.exec(R"SQL(
CREATE SCHEMA chaos;
-- What the writers committed: one row per message, in the message's own transaction.
CREATE TABLE chaos.sent (
  key          text        NOT NULL,
  seq          integer     NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('seq', 'poison', 'oversize')),
  writer       integer     NOT NULL,
  message_id   text        NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (key, seq)
);
CREATE INDEX sent_writer_idx ON chaos.sent (writer);
-- The projector's per-key state: the last sequence number applied (in commit order).
CREATE TABLE chaos.key_state (
  key      text    PRIMARY KEY,
  last_seq integer NOT NULL DEFAULT 0,
  applied  bigint  NOT NULL DEFAULT 0
);
-- Every effect, as a row. No unique constraint on purpose: a duplicate effect is a second
-- row, and a reordering is a row whose prev_seq is not seq - 1.
CREATE TABLE chaos.applied (
  message_id  text        NOT NULL,
  key         text        NOT NULL,
  seq         integer     NOT NULL,
  prev_seq    integer     NOT NULL,
  consumer    text        NOT NULL,
  "partition" integer     NOT NULL,
  "offset"    bigint      NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The effect of one message, called by the projector inside the inbox's transaction.
CREATE FUNCTION chaos.apply(p_key text, p_seq integer, p_id text, p_consumer text,
                            p_partition integer, p_offset bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  prev integer;
BEGIN
  SELECT last_seq INTO prev FROM chaos.key_state WHERE key = p_key FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'chaos: unknown key %', p_key;
  END IF;
  UPDATE chaos.key_state SET last_seq = p_seq, applied = applied + 1 WHERE key = p_key;
  INSERT INTO chaos.applied (message_id, key, seq, prev_seq, consumer, "partition", "offset")
    VALUES (p_id, p_key, p_seq, prev, p_consumer, p_partition, p_offset);
END
$fn$;
)SQL");
  pq::exec(tx,
           "INSERT INTO chaos.key_state (key) SELECT 'k' || lpad(i::text, 4, '0') "
           "FROM generate_series(0, $1 - 1) AS i",
           keys);
  tx.commit();
}

// ---------------------------------------------------------------------------------------
// Writers: each owns the keys k with k % writers == w and keeps their next sequence numbers.
// After any error (the database killed, the backend terminated, commit outcome unknown) it
// reconnects and reads back from chaos.sent what did commit: the source of truth.

namespace {

class Writer {
 public:
  Writer(const Workload& o, int index, std::string pg, WriterStats& stats, Clock::time_point t0,
         const std::atomic<bool>& stop)
      : m_o(o), m_w(index), m_pg(std::move(pg)), m_stats(stats), m_t0(t0), m_stop(stop) {
    for (int k = m_w; k < m_o.keys; k += m_o.writers) m_keys.push_back(k);
    m_share = m_o.messages / m_o.writers + (m_w < m_o.messages % m_o.writers ? 1 : 0);
    m_rng.seed(m_o.seed * 1'000'003ULL + static_cast<std::uint64_t>(m_w));
  }

  void run() {
    auto backoff = 50ms;
    int consecutive = 0;
    while (!m_stop) {
      try {
        if (!m_conn) {
          m_conn = std::make_unique<pqxx::connection>(m_pg + " application_name=chaos-writer-" +
                                                      std::to_string(m_w + 1));
          reload();
        }
        if (m_committed >= m_share && m_poison_done >= poison_quota() &&
            m_oversize_done >= oversize_quota()) {
          break;
        }
        pace();
        write_one();
        backoff = 50ms;
        consecutive = 0;
      } catch (const std::exception& e) {
        m_conn.reset();
        ++m_stats.errors;
        if (++consecutive > 2000) {
          std::lock_guard lock(m_stats.mutex);
          m_stats.fatal = fmt::format("writer {} keeps failing: {}", m_w + 1, e.what());
          break;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, 1000ms);
      }
    }
    ++m_stats.done;
  }

 private:
  // Writer 0 carries the injected bad messages, spread over its share.
  int poison_quota() const { return m_w == 0 ? m_o.poison : 0; }
  int oversize_quota() const { return m_w == 0 ? m_o.oversize : 0; }

  void reload() {
    // A transaction of the previous connection may still be finishing on its backend (a
    // client that lost its socket does not stop the server): wait until it is gone.
    pqxx::nontransaction nt(*m_conn);
    for (int i = 0; i < 100; ++i) {
      const auto r = pq::exec(nt,
                              "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                              "current_setting('application_name') AND pid <> pg_backend_pid()");
      if (r[0][0].as<int>() == 0) break;
      std::this_thread::sleep_for(100ms);
    }
    m_next.clear();
    for (int k : m_keys) m_next[k] = 1;
    m_committed = m_poison_done = m_oversize_done = 0;
    const auto r = pq::exec(
        nt,
        "SELECT key, kind, count(*), max(seq) FROM chaos.sent WHERE writer = $1 GROUP BY key, kind",
        m_w);
    std::int64_t before = 0;
    for (const auto& row : r) {
      const std::string kind = row[1].as<std::string>();
      const int n = row[2].as<int>();
      if (kind == "seq") {
        m_next[std::stoi(row[0].as<std::string>().substr(1))] = row[3].as<int>() + 1;
        m_committed += n;
      } else if (kind == "poison") {
        m_poison_done += n;
      } else {
        m_oversize_done += n;
      }
    }
    before = m_counted;
    m_counted = m_committed;
    m_stats.committed += m_counted - before;
  }

  void pace() {
    const double rate = m_o.messages / m_o.write_seconds;
    for (;;) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - m_t0).count();
      if (static_cast<double>(m_stats.committed.load()) < rate * elapsed || m_stop) return;
      std::this_thread::sleep_for(5ms);
    }
  }

  // Is an injected message due, at this point of this writer's share?
  bool due(int done, int quota) const {
    return done < quota &&
           m_committed >= static_cast<std::int64_t>(m_share) * (done + 1) / (quota + 1);
  }

  void write_one() {
    const txbox::Outbox outbox;
    pqxx::work tx(*m_conn);
    if (m_poison_done < poison_quota() &&
        (due(m_poison_done, poison_quota()) || m_committed >= m_share)) {
      const std::string key = fmt::format("poison-{}", m_poison_done + 1);
      const auto id = outbox.enqueue(
          tx, {.topic = m_o.topic, .key = key, .payload = "poison " + key, .type = "Poison"});
      record(tx, key, 1, "poison", id.str());
      tx.commit();
      ++m_poison_done;
      return;
    }
    if (m_oversize_done < oversize_quota() &&
        (due(m_oversize_done, oversize_quota()) || m_committed >= m_share)) {
      // Written as any SQL writer may (enqueue refuses it): over the broker's 1 MB limit.
      const std::string key = fmt::format("oversize-{}", m_oversize_done + 1);
      const auto r = pq::exec(tx,
                              "INSERT INTO txbox.outbox (message_id, topic, key, payload) VALUES "
                              "(gen_random_uuid(), $1, $2, decode(repeat('ab', 1100000), 'hex')) "
                              "RETURNING message_id::text",
                              m_o.topic, key);
      record(tx, key, 1, "oversize", r[0][0].as<std::string>());
      tx.commit();
      ++m_oversize_done;
      return;
    }
    if (m_committed >= m_share) return;
    std::uniform_int_distribution<int> size(1, 8);
    std::uniform_int_distribution<std::size_t> pick(0, m_keys.size() - 1);
    const int n = static_cast<int>(std::min<std::int64_t>(size(m_rng), m_share - m_committed));
    std::map<int, int> next = m_next;
    std::vector<txbox::Message> msgs;
    std::vector<std::pair<int, int>> keyed;  // key, seq
    for (int i = 0; i < n; ++i) {
      const int k = m_keys[pick(m_rng)];
      const int seq = next[k]++;
      msgs.push_back({.topic = m_o.topic,
                      .key = key_name(k),
                      .payload = key_name(k) + " " + std::to_string(seq),
                      .type = "ChaosEvent"});
      keyed.emplace_back(k, seq);
    }
    const auto ids = outbox.enqueue(tx, std::span<const txbox::Message>(msgs));
    std::string keys = "{", seqs = "{", idtext = "{";
    for (std::size_t i = 0; i < keyed.size(); ++i) {
      const char* sep = i ? "," : "";
      keys += sep + key_name(keyed[i].first);
      seqs += sep + std::to_string(keyed[i].second);
      idtext += sep + ids[i].str();
    }
    pq::exec(
        tx,
        "INSERT INTO chaos.sent (key, seq, kind, writer, message_id) "
        "SELECT k, s, 'seq', $4, i FROM unnest($1::text[], $2::int[], $3::text[]) AS u(k, s, i)",
        keys + "}", seqs + "}", idtext + "}", m_w);
    tx.commit();
    m_next = std::move(next);
    m_committed += n;
    m_counted += n;
    m_stats.committed += n;
    ++m_stats.transactions;
  }

  void record(pqxx::work& tx, const std::string& key, int seq, const char* kind,
              const std::string& id) {
    pq::exec(
        tx,
        "INSERT INTO chaos.sent (key, seq, kind, writer, message_id) VALUES ($1, $2, $3, $4, $5)",
        key, seq, kind, m_w, id);
  }

  const Workload& m_o;
  int m_w;
  std::string m_pg;
  WriterStats& m_stats;
  Clock::time_point m_t0;
  const std::atomic<bool>& m_stop;
  std::vector<int> m_keys;
  std::int64_t m_share = 0;
  std::unique_ptr<pqxx::connection> m_conn;
  std::map<int, int> m_next;
  std::int64_t m_committed = 0;  // as known from the database after the last reload
  std::int64_t m_counted = 0;    // what this writer added to m_stats.committed
  int m_poison_done = 0, m_oversize_done = 0;
  std::mt19937_64 m_rng;
};

}  // namespace

void run_writer(const Workload& work, int index, const std::string& pg, WriterStats& stats,
                Clock::time_point t0, const std::atomic<bool>& stop) {
  Writer(work, index, pg, stats, t0, stop).run();
}

// ---------------------------------------------------------------------------------------
// The outcome.

Verdict verify(const std::string& pg, const std::string& topic,
               const std::optional<std::vector<std::int64_t>>& hw) {
  Verdict v;
  pqxx::connection c(pg);
  pqxx::work tx(c);
  tx.exec("CREATE INDEX IF NOT EXISTS applied_message_idx ON chaos.applied (message_id)");
  tx.exec("CREATE INDEX IF NOT EXISTS sent_message_idx ON chaos.sent (message_id)");
  const auto one = [&](const std::string& sql) { return tx.exec(sql)[0][0].as<std::int64_t>(); };
  v.committed = one("SELECT count(*) FROM chaos.sent WHERE kind = 'seq'");
  v.poison = one("SELECT count(*) FROM chaos.sent WHERE kind = 'poison'");
  v.oversize = one("SELECT count(*) FROM chaos.sent WHERE kind = 'oversize'");
  v.applied_rows = one("SELECT count(*) FROM chaos.applied");
  v.applied_distinct = one("SELECT count(DISTINCT message_id) FROM chaos.applied");
  v.duplicate_effects = v.applied_rows - v.applied_distinct;
  v.lost =
      one("SELECT count(*) FROM chaos.sent s WHERE kind = 'seq' AND NOT EXISTS "
          "(SELECT 1 FROM chaos.applied a WHERE a.message_id = s.message_id)");
  v.phantom = one(
      "SELECT count(*) FROM chaos.applied a WHERE NOT EXISTS (SELECT 1 FROM chaos.sent s "
      "WHERE s.message_id = a.message_id AND s.kind = 'seq' AND s.key = a.key AND s.seq = a.seq)");
  v.order_violations = one("SELECT count(*) FROM chaos.applied WHERE seq <> prev_seq + 1");
  v.outbox_left = one("SELECT count(*) FROM txbox.outbox");
  v.inbox_dead = one("SELECT count(*) FROM txbox.inbox_dead WHERE consumer = 'chaos'");
  v.inbox_dead_unexpected =
      one("SELECT count(*) FROM txbox.inbox_dead d WHERE consumer = 'chaos' AND NOT EXISTS "
          "(SELECT 1 FROM chaos.sent s WHERE s.kind = 'poison' AND s.message_id = d.message_id)");
  v.poison_missing =
      one("SELECT count(*) FROM chaos.sent s WHERE kind = 'poison' AND NOT EXISTS (SELECT 1 FROM "
          "txbox.inbox_dead d WHERE d.consumer = 'chaos' AND d.message_id = s.message_id)");
  v.outbox_dead = one("SELECT count(*) FROM txbox.outbox_dead");
  v.outbox_dead_unexpected =
      one("SELECT count(*) FROM txbox.outbox_dead d WHERE NOT EXISTS (SELECT 1 FROM chaos.sent s "
          "WHERE s.kind = 'oversize' AND s.message_id = d.message_id::text)");
  v.oversize_missing =
      one("SELECT count(*) FROM chaos.sent s WHERE kind = 'oversize' AND NOT EXISTS (SELECT 1 FROM "
          "txbox.outbox_dead d WHERE d.message_id::text = s.message_id)");
  v.consumed = pq::exec(tx,
                        "SELECT coalesce(sum(next_offset), 0) FROM txbox.inbox_offsets "
                        "WHERE consumer = 'chaos' AND topic = $1",
                        topic)[0][0]
                   .as<std::int64_t>();
  v.inbox_rows = one("SELECT count(*) FROM txbox.inbox WHERE consumer = 'chaos'");
  if (hw) {
    v.kafka_records = 0;
    for (auto h : *hw) v.kafka_records += h;
    std::map<int, std::int64_t> stored;
    for (const auto& row :
         pq::exec(tx,
                  "SELECT \"partition\", next_offset FROM txbox.inbox_offsets WHERE "
                  "consumer = 'chaos' AND topic = $1",
                  topic)) {
      stored[row[0].as<int>()] = row[1].as<std::int64_t>();
    }
    for (std::size_t p = 0; p < hw->size(); ++p) {
      const auto at = stored.contains(static_cast<int>(p)) ? stored[static_cast<int>(p)] : 0;
      if (at != (*hw)[p]) {
        v.details.push_back(fmt::format("partition {}/{}: stored next offset {}, end offset {}",
                                        topic, p, at, (*hw)[p]));
      }
    }
  }

  const auto examples = [&](const std::string& title, const std::string& sql) {
    const auto r = tx.exec(sql);
    if (r.empty()) return;
    v.details.push_back(title);
    for (const auto& row : r) {
      std::string line = "    ";
      for (const auto& f : row) line += std::string(f.name()) + "=" + f.c_str() + " ";
      v.details.push_back(line);
    }
  };
  examples("lost (committed, never applied), first 10:",
           "SELECT key, seq, message_id, committed_at FROM chaos.sent s WHERE kind = 'seq' AND "
           "NOT EXISTS (SELECT 1 FROM chaos.applied a WHERE a.message_id = s.message_id) "
           "ORDER BY committed_at LIMIT 10");
  examples("duplicate effects, first 10:",
           "SELECT message_id, key, seq, count(*) AS effects, string_agg(consumer || '@' || "
           "\"partition\" || '/' || \"offset\", ' ') AS at FROM chaos.applied GROUP BY "
           "message_id, key, seq HAVING count(*) > 1 LIMIT 10");
  examples("order violations (seq <> prev_seq + 1), first 10 in commit order:",
           "SELECT key, seq, prev_seq, consumer, \"partition\", \"offset\", applied_at FROM "
           "chaos.applied WHERE seq <> prev_seq + 1 ORDER BY applied_at LIMIT 10");
  examples("phantom or garbled effects, first 10:",
           "SELECT message_id, key, seq FROM chaos.applied a WHERE NOT EXISTS (SELECT 1 FROM "
           "chaos.sent s WHERE s.message_id = a.message_id AND s.kind = 'seq' AND s.key = a.key "
           "AND s.seq = a.seq) LIMIT 10");
  examples("unexpected inbox dead letters, first 10:",
           "SELECT message_id, topic, \"partition\", \"offset\", error FROM txbox.inbox_dead d "
           "WHERE consumer = 'chaos' AND NOT EXISTS (SELECT 1 FROM chaos.sent s WHERE s.kind = "
           "'poison' AND s.message_id = d.message_id) LIMIT 10");
  examples("unexpected outbox dead letters, first 10:",
           "SELECT message_id, key, error FROM txbox.outbox_dead d WHERE NOT EXISTS (SELECT 1 "
           "FROM chaos.sent s WHERE s.kind = 'oversize' AND s.message_id = d.message_id::text) "
           "LIMIT 10");
  examples("left in the outbox, first 10:",
           "SELECT id, key, shard, attempts, last_error FROM txbox.outbox ORDER BY id LIMIT 10");
  tx.commit();
  return v;
}

}  // namespace chaos
