// The log audit: a plain librdkafka read_committed consumer over every partition of a topic.
#include "log_audit.hpp"

#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "report.hpp"
#include "stale_copies.hpp"
#include "txbox/detail/rdkafka.hpp"
#include "txbox/message.hpp"

namespace chaos {

using namespace txbox::detail;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t k_examples = 10;  // examples of each finding in LogAudit::details

// A consumer that never joins a group: offsets are queried, partitions read by the simple
// consumer API.
kafka_ptr make_reader(const std::string& bootstrap, const char* isolation) {
  conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  const auto set = [&](const char* k, const char* v) {
    if (rd_kafka_conf_set(conf.get(), k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(std::string("log audit: kafka ") + k + ": " + err);
    }
  };
  set("bootstrap.servers", bootstrap.c_str());
  set("isolation.level", isolation);
  set("enable.partition.eof", "true");
  set("enable.auto.commit", "false");
  set("enable.auto.offset.store", "false");
  set("auto.commit.enable", "false");  // the simple consumer's own (topic) setting
  set("fetch.max.bytes", "4194304");
  // The broker may have just come back: say nothing of its connection errors.
  rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t*, int, const char*, const char*) {});
  rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int, const char*, void*) {});
  kafka_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(std::string("log audit: rd_kafka_new: ") + err);
  (void)conf.release();  // rd_kafka_new took ownership on success
  return rk;
}

// The end offset of each partition as `rk`'s isolation level sees it: the last stable
// offset for read_committed, the high watermark for read_uncommitted. nullopt: no answer.
std::optional<std::vector<std::int64_t>> end_offsets(rd_kafka_t* rk, const std::string& topic,
                                                     std::size_t partitions, int timeout_ms) {
  std::vector<std::int64_t> out;
  for (std::size_t p = 0; p < partitions; ++p) {
    std::int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), static_cast<std::int32_t>(p), &lo, &hi,
                                         timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::nullopt;
    }
    out.push_back(hi);
  }
  return out;
}

// The partitions a simple consumer started fetching: stopped when it goes out of scope.
struct Fetches {
  rd_kafka_topic_t* topic;
  std::vector<std::int32_t> partitions;
  explicit Fetches(rd_kafka_topic_t* t) : topic(t) {}
  Fetches(const Fetches&) = delete;
  Fetches& operator=(const Fetches&) = delete;
  ~Fetches() {
    for (const auto p : partitions) rd_kafka_consume_stop(topic, p);
  }
};

// Reads each partition p of `topic` with from[p] < to[p] from from[p] until the consumer
// reports its end at or past to[p], handing every record to `on_record`. False when
// `deadline` passed first. The simple consumer of librdkafka: no group, no coordinator.
bool read_range(rd_kafka_t* rk, const std::string& topic, const std::vector<std::int64_t>& from,
                const std::vector<std::int64_t>& to, Clock::time_point deadline,
                const std::function<void(const rd_kafka_message_t&)>& on_record) {
  topic_ptr rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  if (!rkt) throw std::runtime_error("log audit: rd_kafka_topic_new failed for " + topic);
  queue_ptr queue(rd_kafka_queue_new(rk));
  Fetches started(rkt.get());  // declared after the queue and the topic: stopped first
  std::vector<bool> done(from.size(), true);
  std::size_t left = 0;
  for (std::size_t p = 0; p < from.size(); ++p) {
    if (from[p] >= to[p]) continue;
    const auto part = static_cast<std::int32_t>(p);
    if (rd_kafka_consume_start_queue(rkt.get(), part, from[p], queue.get()) != 0) {
      throw std::runtime_error(fmt::format("log audit: cannot start reading {}/{}: {}", topic, p,
                                           rd_kafka_err2str(rd_kafka_last_error())));
    }
    started.partitions.push_back(part);
    done[p] = false;
    ++left;
  }
  while (left > 0 && Clock::now() < deadline) {
    message_ptr m(rd_kafka_consume_queue(queue.get(), 200));
    if (!m) continue;
    const auto p = static_cast<std::size_t>(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (p < done.size() && !done[p] && m->offset >= to[p]) {
        done[p] = true;
        --left;
      }
      continue;
    }
    if (m->err) {
      char why[512];
      if (rd_kafka_fatal_error(rk, why, sizeof why) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        throw std::runtime_error(std::string("log audit: consumer failed: ") + why);
      }
      continue;  // transient (a broker coming back): librdkafka retries
    }
    if (p < done.size() && m->offset < to[p]) on_record(*m);
  }
  return left == 0;
}

std::string text(const void* p, std::size_t n) {
  return p ? std::string(static_cast<const char*>(p), n) : std::string();
}

// The workload's sequence number: payload "KEY SEQ" of a key "kNNNN"; -1 for other records
// (poison messages).
int sequence_of(const std::string& key, const std::string& payload) {
  if (key.empty() || key[0] != 'k' || payload.size() <= key.size() + 1 ||
      payload.compare(0, key.size(), key) != 0 || payload[key.size()] != ' ') {
    return -1;
  }
  int seq = 0;
  for (std::size_t i = key.size() + 1; i < payload.size(); ++i) {
    if (payload[i] < '0' || payload[i] > '9') return -1;
    seq = seq * 10 + (payload[i] - '0');
  }
  return seq;
}

// Counts the records handed to it: ids, per-key order, the offset after each partition's last.
class Counter {
 public:
  explicit Counter(LogAudit& a) : m_a(a) {}

  void operator()(const rd_kafka_message_t& m) {
    ++m_a.records;
    const auto p = static_cast<std::size_t>(m.partition);
    if (p < m_a.data_end.size()) m_a.data_end[p] = std::max(m_a.data_end[p], m.offset + 1);
    const std::string at = fmt::format("{}/{}", m.partition, m.offset);
    rd_kafka_headers_t* hdrs = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    if (rd_kafka_message_headers(&m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, txbox::headers::id, &value, &size) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++m_a.without_id;
      example(m_without, fmt::format("    no {} header at {}", txbox::headers::id, at));
    } else {
      const std::string id = text(value, size);
      const auto [it, fresh] = m_first.try_emplace(id, at);
      if (!fresh) {
        ++m_a.duplicate_copies;
        example(m_duplicates, fmt::format("    ce_id {} at {}, first at {}", id, at, it->second));
      }
    }
    const std::string key = text(m.key, m.key_len);
    const int seq = sequence_of(key, text(m.payload, m.len));
    if (seq < 0) return;
    rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    m_behind.add(key, seq, rd_kafka_message_timestamp(&m, &type));
    auto& last = m_keys[key];
    if (seq < last.seq) {
      ++m_a.stale_copies;
      example(m_stale, fmt::format("    key {} seq {} at {} after seq {} at {}", key, seq, at,
                                   last.seq, last.at));
    } else {
      last = {seq, at};
    }
  }

  // The examples, and the distinct ids, into the audit.
  void finish() {
    m_a.distinct_ids = static_cast<std::int64_t>(m_first.size());
    for (const auto& e : m_behind.episodes()) {
      m_a.behind.push_back({e.copies, e.at, e.newest_at,
                            fmt::format("    key {} seq {} (created {} ms, {} older) after seq {} "
                                        "(created {} ms)",
                                        e.key, e.seq, e.at, e.copies, e.newest, e.newest_at)});
    }
    const auto add = [&](const std::vector<std::string>& lines, std::int64_t n, const char* what) {
      if (lines.empty()) return;
      m_a.details.push_back(
          fmt::format("log audit: {} {}, first {}:", group(n), what, lines.size()));
      m_a.details.insert(m_a.details.end(), lines.begin(), lines.end());
    };
    add(m_duplicates, m_a.duplicate_copies, "duplicate copies (partition/offset)");
    add(m_stale, m_a.stale_copies, "stale copies (a key's message after a later one)");
    add(m_without, m_a.without_id, "records without an id");
  }

 private:
  struct Last {
    int seq = 0;
    std::string at = "-";
  };
  static void example(std::vector<std::string>& lines, std::string line) {
    if (lines.size() < k_examples) lines.push_back(std::move(line));
  }

  LogAudit& m_a;
  std::unordered_map<std::string, std::string> m_first;  // ce_id -> where first seen
  std::unordered_map<std::string, Last> m_keys;          // key -> its highest seq so far
  std::vector<std::string> m_duplicates, m_stale, m_without;
  txbox::test::StaleCopies m_behind;  // the stale copies that leave their key behind
};

}  // namespace

LogAudit audit_log(const std::string& bootstrap, const std::string& topic, int partitions,
                   double settle_s, double timeout_s) {
  const auto n = static_cast<std::size_t>(partitions);
  auto committed = make_reader(bootstrap, "read_committed");
  auto uncommitted = make_reader(bootstrap, "read_uncommitted");
  // An open transaction holds the last stable offset below the high watermark: wait for it
  // to commit or abort (a fenced or timed-out one aborts).
  const auto settle_until =
      Clock::now() + std::chrono::milliseconds(static_cast<long>(settle_s * 1000));
  std::optional<std::vector<std::int64_t>> lso, hw;
  for (;;) {
    lso = end_offsets(committed.get(), topic, n, 10'000);
    hw = end_offsets(uncommitted.get(), topic, n, 10'000);
    if (lso && hw && *lso == *hw) break;
    if (Clock::now() > settle_until) break;
    std::this_thread::sleep_for(500ms);
  }
  if (!lso || !hw) throw std::runtime_error("log audit: the broker does not say its end offsets");
  LogAudit a;
  a.end = *lso;
  a.data_end.assign(n, 0);
  for (std::size_t p = 0; p < n; ++p) {
    if ((*lso)[p] < (*hw)[p]) {
      ++a.open_partitions;
      a.details.push_back(fmt::format(
          "log audit: partition {}/{}: last stable offset {} below the high watermark {} after "
          "{:.0f} s (a transaction stays open)",
          topic, p, (*lso)[p], (*hw)[p], settle_s));
    }
  }
  Counter count(a);
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
  if (!read_range(committed.get(), topic, std::vector<std::int64_t>(n, 0), a.end, deadline,
                  std::ref(count))) {
    throw std::runtime_error(fmt::format(
        "log audit: the read did not reach the end of {} within {:.0f} s ({} records read)", topic,
        timeout_s, group(a.records)));
  }
  count.finish();
  return a;
}

std::optional<std::int64_t> records_after(const std::string& bootstrap, const std::string& topic,
                                          const std::vector<std::int64_t>& from, int timeout_ms) {
  try {
    auto rk = make_reader(bootstrap, "read_committed");
    const auto end = end_offsets(rk.get(), topic, from.size(), timeout_ms);
    if (!end) return std::nullopt;
    std::int64_t n = 0;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    if (!read_range(rk.get(), topic, from, *end, deadline,
                    [&](const rd_kafka_message_t&) { ++n; })) {
      return std::nullopt;
    }
    return n;
  } catch (const std::runtime_error&) {
    return std::nullopt;
  }
}

std::string log_line(const LogAudit& a) {
  return fmt::format(
      "log: {} records, {} duplicate copies, {} stale copies (a key's message after a later one "
      "of that key)",
      group(a.records), group(a.duplicate_copies), group(a.stale_copies));
}

}  // namespace chaos
