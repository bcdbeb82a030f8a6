// The exactly_once lanes (see txn_lanes.hpp).
#include "txn_lanes.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "fault_point.hpp"

namespace txbox::relay {
namespace {

// A lane's transaction takes at most this many rows: its progress record (~50 bytes a row)
// stays far below the broker's 1 MB message.max.bytes. The rest go in the next round.
constexpr std::size_t k_max_txn_rows = 5'000;

}  // namespace

TxnLanes::TxnLanes(LanesOptions options, ProgressLog& progress)
    : m_opt(std::move(options)), m_progress(progress) {}

void TxnLanes::open(int lane, std::unique_ptr<Lane>& slot) const {
  ProducerOptions o = m_opt.producer;
  o.transactional_id = lane_key(m_opt.id_prefix, lane);
  slot.reset();  // the old producer first: it may not outlive its fencing quietly
  slot = std::make_unique<Lane>(std::move(o));
  slot->txn.init_transactions(m_opt.init_timeout);
}

std::vector<PublishedRow> TxnLanes::adopt(const LeaseView& view) {
  const auto fresh = m_book.follow(view);
  std::erase_if(m_producers, [&](const auto& p) { return !m_book.is_held(p.first); });
  // Fencing waits for the coordinator (it aborts the previous owner's open transaction, or
  // finishes its commit): the lanes in parallel, each task on its own producer slot (taken
  // here: the map is not touched while they run).
  const auto t0 = clock::now();
  std::vector<std::pair<int, std::unique_ptr<Lane>*>> slots;
  for (int lane : fresh) slots.emplace_back(lane, &m_producers[lane]);
  std::vector<std::future<void>> inits;
  for (const auto& s : slots) {
    inits.push_back(std::async(std::launch::async, [this, s] { open(s.first, *s.second); }));
  }
  std::exception_ptr first;
  for (auto& f : inits) {
    try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
  std::size_t named = 0;
  auto last =
      fresh.empty() ? std::map<int, std::vector<PublishedRow>>{} : m_progress.last_committed(fresh);
  for (int lane : fresh) {
    named += last[lane].size();
    m_book.opened(lane, std::move(last[lane]));
  }
  if (!fresh.empty()) {
    spdlog::info(
        "exactly-once: took lane(s) {} ({} shards each) in {} ms, fencing their earlier "
        "producers; their last transactions published {} row(s), deleted now if still in the "
        "outbox",
        fmt::join(fresh, ","), k_lane_shards,
        std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0).count(), named);
  }
  return m_book.unsettled();
}

void TxnLanes::settled() {
  m_book.settled();
}

LaneRound TxnLanes::deliver(std::vector<Row> rows, const RoundGates& gates,
                            const Waiting& waiting) {
  LaneRound out;
  out.outcomes.assign(rows.size(),
                      Outcome::skipped("not in this round's transaction of its lane (lane not "
                                       "ready, or over the row cap)"));
  auto parts = split(rows);
  for (auto& p : parts) {
    begin(p, gates);
    out.lease_short += p.lease_short;
  }
  for (auto& p : parts) await_acks(p, waiting, out.outcomes);
  // Commit where every row made it (and the leases still hold), in parallel; abort the rest.
  const bool may_commit = m_opt.producer.now() <= gates.commit_until;
  const auto ends = end_transactions(parts, may_commit);
  for (std::size_t i = 0; i < parts.size(); ++i) book_end(parts[i], ends[i], may_commit, out);
  for (auto& p : parts) {
    std::move(p.rows.begin(), p.rows.end(), rows.begin() + static_cast<std::ptrdiff_t>(p.begin));
  }
  out.rows = std::move(rows);
  return out;
}

std::vector<TxnLanes::Part> TxnLanes::split(std::vector<Row>& rows) const {
  std::vector<Part> parts;
  // Rows come ordered by shard, so each lane's rows are contiguous.
  for (std::size_t b = 0; b < rows.size();) {
    const int lane = lane_of(rows[b].shard);
    std::size_t e = b;
    while (e < rows.size() && lane_of(rows[e].shard) == lane) ++e;
    const std::size_t end = std::min(e, b + k_max_txn_rows);  // a prefix of each shard's rows
    if (m_book.ready(lane)) {
      Part p;
      p.lane = lane;
      p.begin = b;
      p.end = end;
      p.rows.assign(std::make_move_iterator(rows.begin() + static_cast<std::ptrdiff_t>(b)),
                    std::make_move_iterator(rows.begin() + static_cast<std::ptrdiff_t>(end)));
      parts.push_back(std::move(p));
    }
    b = e;
  }
  return parts;
}

void TxnLanes::begin(Part& p, const RoundGates& gates) {
  Lane& lane = *m_producers.at(p.lane);
  std::vector<PublishedRow> all;
  for (const auto& r : p.rows) all.push_back({r.id, r.message_id});
  try {
    lane.txn.begin_transaction();
    auto handed = lane.round.send(std::move(p.rows), gates);
    p.rows = std::move(handed.rows);
    p.lease_short = handed.lease_short;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (handed.outcomes[i].in_flight()) p.sent.push_back(std::move(all[i]));
    }
    if (!p.sent.empty()) {
      lane.txn.produce_record(m_progress.topic(), p.lane, m_progress.key(p.lane),
                              encode_progress(p.lane, m_opt.relay_name, p.sent));
    }
  } catch (const std::exception& e) {
    // This lane's rows wait (skipped); the others go on. A new producer takes it up.
    spdlog::warn("exactly-once: lane {}: {}; taking it up again with a new producer", p.lane,
                 e.what());
    m_book.broke(p.lane);
    p.failed = true;
  }
}

void TxnLanes::await_acks(Part& p, const Waiting& waiting, std::vector<Outcome>& outcomes) {
  if (p.failed) return;
  auto got = m_producers.at(p.lane)->round.await(waiting);
  // A row handed over but not acknowledged (or refused) keeps the transaction from
  // committing; held and skipped rows wait for a later one.
  const bool all_acked = std::none_of(got.begin(), got.end(), [](const Outcome& o) {
    return o.in_flight() || o.state() == Outcome::State::failed ||
           o.state() == Outcome::State::given_up;
  });
  p.commit = all_acked && !p.sent.empty();
  std::move(got.begin(), got.end(), outcomes.begin() + static_cast<std::ptrdiff_t>(p.begin));
}

std::vector<TxnLanes::Ended> TxnLanes::end_transactions(const std::vector<Part>& parts,
                                                        bool may_commit) {
  std::vector<std::future<Ended>> ends;
  for (const auto& p : parts) {
    TxnProducer* txn = &m_producers.at(p.lane)->txn;  // taken here, not in the task
    const bool commit = p.commit && may_commit && !p.failed;
    const bool skip = p.failed;
    const auto timeout = m_opt.commit_timeout;
    ends.push_back(std::async(std::launch::async, [txn, commit, skip, timeout] {
      Ended e;
      if (skip) return e;
      const auto t0 = clock::now();
      if (commit) {
        fault_point("before_commit");
        e.end = txn->commit(timeout);
        e.seconds = std::chrono::duration<double>(clock::now() - t0).count();
      } else {
        e.end.fatal = !txn->abort(timeout);
        e.end.error = "not every row of the transaction was acknowledged, or the leases ran short";
      }
      return e;
    }));
  }
  std::vector<Ended> out;
  for (auto& f : ends) out.push_back(f.get());
  return out;
}

void TxnLanes::book_end(Part& p, const Ended& ended, bool may_commit, LaneRound& out) {
  if (p.failed) return;
  const TxnEnd& end = ended.end;
  if (p.commit && may_commit) out.commit_seconds.push_back(ended.seconds);
  if (end.committed) {
    ++out.committed;
    m_book.committed(p.lane, std::move(p.sent));
    return;
  }
  if (!p.sent.empty()) ++out.aborted;
  if (out.first_abort.empty() && !p.sent.empty()) out.first_abort = end.error;
  if (end.fatal) {
    m_book.broke(p.lane);  // fenced, or the commit is in doubt: adopt() learns from Kafka
    spdlog::warn("exactly-once: lane {}: {}; taking it up again with a new producer", p.lane,
                 end.error);
  }
  for (std::size_t r = p.begin; r < p.end; ++r) {
    Outcome& o = out.outcomes[r];
    if (o.is_acked() || o.in_flight()) {
      o = Outcome::skipped("its transaction was aborted; sent again in a new one");
    }
  }
}

std::int64_t TxnLanes::queue_length() const {
  std::int64_t n = 0;
  for (const auto& [id, lane] : m_producers) n += lane ? lane->producer.queue_length() : 0;
  return n;
}

std::uint64_t TxnLanes::late_reports() const {
  std::uint64_t n = 0;
  for (const auto& [id, lane] : m_producers) n += lane ? lane->round.late_reports() : 0;
  return n;
}

void TxnLanes::flush(std::chrono::milliseconds wait) {
  for (auto& [id, lane] : m_producers) {
    if (lane && m_book.is_open(id)) lane->producer.flush(wait);
  }
}

}  // namespace txbox::relay
