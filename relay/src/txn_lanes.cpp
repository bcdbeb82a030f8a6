// The exactly_once lanes (see txn_lanes.hpp).
#include "txn_lanes.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <future>

#include "fault_point.hpp"

namespace txbox::relay {
namespace {

// A lane's transaction takes at most this many rows: its progress record (~50 bytes a row)
// stays far below the broker's 1 MB message.max.bytes. The rest go in the next round.
constexpr std::size_t k_max_txn_rows = 5'000;

Delivery skipped(std::string why) {
  return {Delivery::state::skipped, RD_KAFKA_RESP_ERR__STATE, std::move(why)};
}

}  // namespace

TxnLanes::TxnLanes(LanesOptions options, ProgressLog& progress)
    : m_opt(std::move(options)), m_progress(progress) {}

void TxnLanes::open(int lane, std::unique_ptr<Publisher>& slot) const {
  PublisherOptions o = m_opt.publisher;
  o.transactional_id = lane_key(m_opt.id_prefix, lane);
  slot.reset();  // the old producer first: it may not outlive its fencing quietly
  slot = std::make_unique<Publisher>(std::move(o));
  slot->init_transactions(m_opt.init_timeout);
}

std::vector<PublishedRow> TxnLanes::adopt(const LeaseView& view) {
  const auto fresh = m_book.follow(view);
  std::erase_if(m_producers, [&](const auto& p) { return !m_book.is_held(p.first); });
  // Fencing waits for the coordinator (it aborts the previous owner's open transaction, or
  // finishes its commit): the lanes in parallel, each task on its own producer slot (taken
  // here: the map is not touched while they run).
  const auto t0 = clock::now();
  std::vector<std::pair<int, std::unique_ptr<Publisher>*>> slots;
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

LaneRound TxnLanes::deliver(std::vector<Row>& rows, const Publisher::HoldFn& hold,
                            const MayFn& may_send, const MayFn& may_commit,
                            const std::stop_token& stop, std::chrono::milliseconds slow_after,
                            const std::function<void()>& on_slow) {
  LaneRound out;
  out.deliveries.assign(
      rows.size(),
      skipped("not in this round's transaction of its lane (lane not ready, or over the row cap)"));
  struct Part {
    int lane;
    std::size_t begin, end;
    std::vector<Row> rows;
    std::vector<PublishedRow> sent;
    bool commit = false;
    bool failed = false;
  };
  std::vector<Part> parts;
  // Rows come ordered by shard, so each lane's rows are contiguous.
  for (std::size_t b = 0; b < rows.size();) {
    const int lane = lane_of(rows[b].shard);
    std::size_t e = b;
    while (e < rows.size() && lane_of(rows[e].shard) == lane) ++e;
    const std::size_t end = std::min(e, b + k_max_txn_rows);  // a prefix of each shard's rows
    if (m_book.ready(lane)) {
      parts.push_back({lane,
                       b,
                       end,
                       {std::make_move_iterator(rows.begin() + static_cast<std::ptrdiff_t>(b)),
                        std::make_move_iterator(rows.begin() + static_cast<std::ptrdiff_t>(end))},
                       {}});
    }
    b = e;
  }
  for (auto& p : parts) {
    Publisher& pub = *m_producers.at(p.lane);
    std::vector<PublishedRow> all;
    for (const auto& r : p.rows) all.push_back({r.id, r.message_id});
    try {
      pub.begin_transaction();
      out.lease_short += pub.send(p.rows, hold, may_send);
      for (std::size_t i = 0; i < all.size(); ++i) {
        if (pub.outcomes()[i].st == Delivery::state::pending) p.sent.push_back(std::move(all[i]));
      }
      if (!p.sent.empty()) {
        pub.produce_record(m_progress.topic(), p.lane, m_progress.key(p.lane),
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
  for (auto& p : parts) {
    if (p.failed) {
      std::move(p.rows.begin(), p.rows.end(), rows.begin() + static_cast<std::ptrdiff_t>(p.begin));
      continue;
    }
    auto deliveries = m_producers.at(p.lane)->await(stop, slow_after, on_slow);
    bool all_acked = !p.sent.empty();
    for (const auto& d : deliveries) {
      if (d.st == Delivery::state::pending || d.st == Delivery::state::failed) all_acked = false;
    }
    std::move(deliveries.begin(), deliveries.end(),
              out.deliveries.begin() + static_cast<std::ptrdiff_t>(p.begin));
    std::move(p.rows.begin(), p.rows.end(), rows.begin() + static_cast<std::ptrdiff_t>(p.begin));
    p.commit = all_acked;
  }
  // Commit where every row made it (and the leases still hold), in parallel; abort the rest.
  const bool may = may_commit();
  struct Ended {
    TxnEnd end;
    double seconds = 0;
  };
  std::vector<std::future<Ended>> ends;
  for (auto& p : parts) {
    Publisher* pub = m_producers.at(p.lane).get();  // taken here, not in the task
    const bool commit = p.commit && may && !p.failed;
    const bool skip = p.failed;
    const auto timeout = m_opt.commit_timeout;
    ends.push_back(std::async(std::launch::async, [pub, commit, skip, timeout] {
      Ended e;
      if (skip) return e;
      const auto t0 = clock::now();
      if (commit) {
        fault_point("before_commit");
        e.end = pub->commit(timeout);
        e.seconds = std::chrono::duration<double>(clock::now() - t0).count();
      } else {
        e.end.fatal = !pub->abort(timeout);
        e.end.error = "not every row of the transaction was acknowledged, or the leases ran short";
      }
      return e;
    }));
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    auto [end, seconds] = ends[i].get();
    if (p.failed) continue;
    if (p.commit && may) out.commit_seconds.push_back(seconds);
    if (end.committed) {
      ++out.committed;
      m_book.committed(p.lane, std::move(p.sent));
      continue;
    }
    if (!p.sent.empty()) ++out.aborted;
    if (out.first_abort.empty() && !p.sent.empty()) out.first_abort = end.error;
    if (end.fatal) {
      m_book.broke(p.lane);  // fenced, or the commit is in doubt: adopt() learns from Kafka
      spdlog::warn("exactly-once: lane {}: {}; taking it up again with a new producer", p.lane,
                   end.error);
    }
    for (std::size_t r = p.begin; r < p.end; ++r) {
      Delivery& d = out.deliveries[r];
      if (d.st == Delivery::state::acked || d.st == Delivery::state::pending) {
        d = skipped("its transaction was aborted; sent again in a new one");
      }
    }
  }
  return out;
}

std::int64_t TxnLanes::queue_length() const {
  std::int64_t n = 0;
  for (const auto& [lane, pub] : m_producers) n += pub ? pub->queue_length() : 0;
  return n;
}

std::uint64_t TxnLanes::late_reports() const {
  std::uint64_t n = 0;
  for (const auto& [lane, pub] : m_producers) n += pub ? pub->late_reports() : 0;
  return n;
}

void TxnLanes::flush(std::chrono::milliseconds wait) {
  for (auto& [lane, pub] : m_producers) {
    if (pub && m_book.is_open(lane)) pub->flush(wait);
  }
}

}  // namespace txbox::relay
