// The writers' bench: one group of writers (messages per tx × writers) taking the arms in turn.
#include <chrono>

#include "txbox/detail/pq.hpp"
#include "writer_bench.hpp"

namespace pq = txbox::pq;

namespace wb {
namespace {

using steady = std::chrono::steady_clock;

double seconds_now() {
  return std::chrono::duration<double>(steady::now().time_since_epoch()).count();
}

void sleep_for(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// The snapshot's fields.
enum Field : std::size_t { k_commits, k_at, k_server, k_client, k_wal };

}  // namespace

Group::Group(const Options& o, const std::vector<Arm>& arms, int n, int writers)
    : m_arms(arms),
      m_n(n),
      m_settle(o.settle),
      m_counters(static_cast<std::size_t>(writers)),
      m_errors(arms.size()),
      m_first_error(arms.size()) {
  for (int w = 0; w < writers; ++w) {
    m_pool.push_back(std::make_unique<Writer>(o, arms, static_cast<unsigned>(w * 7919 + n)));
    m_backends.push_back(m_pool.back()->backend_pid());
  }
  for (std::size_t w = 0; w < m_pool.size(); ++w) m_threads.emplace_back([this, w] { loop(w); });
}

Group::~Group() {
  m_stop = true;
  for (std::thread& t : m_threads) t.join();
}

// Runs the current arm's transactions; between two, holds while paused.
void Group::loop(std::size_t w) {
  while (!m_stop) {
    const int a = m_current.load();
    if (a < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    ++m_busy;
    if (m_current.load() == a) {
      try {
        m_pool[w]->run_tx(m_arms[static_cast<std::size_t>(a)], m_n);
        ++m_counters[w].commits;
      } catch (const std::exception& e) {
        ++m_errors[static_cast<std::size_t>(a)];
        const std::lock_guard lock(m_mutex);
        std::string& first = m_first_error[static_cast<std::size_t>(a)];
        if (first.empty()) first = e.what();
      }
    }
    --m_busy;
  }
}

void Group::pause() {
  m_current = -1;
  while (m_busy.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

std::array<double, 5> Group::snapshot(pqxx::connection& db) {
  std::array<double, 5> s{};
  for (const Counter& c : m_counters) s[k_commits] += static_cast<double>(c.commits.load());
  s[k_at] = seconds_now();
  s[k_client] = self_cpu_seconds();
  for (const int pid : m_backends) s[k_server] += process_cpu_seconds(pid);
  s[k_wal] = pq::exec1(pqxx::nontransaction(db),
                       "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")[0]
                 .as<double>();
  return s;
}

void Group::record(Cell& cell, std::size_t a, const std::array<double, 5>& before,
                   pqxx::connection& db) {
  const std::array<double, 5> after = snapshot(db);
  const auto commits = static_cast<long>(after[k_commits] - before[k_commits]);
  const double seconds = after[k_at] - before[k_at];
  cell.commits += commits;
  cell.seconds += seconds;
  cell.server += after[k_server] - before[k_server];
  cell.client += after[k_client] - before[k_client];
  cell.wal += after[k_wal] - before[k_wal];
  cell.slice_tps.push_back(static_cast<double>(commits) / seconds);
  cell.errors = m_errors[a].load();
  const std::lock_guard lock(m_mutex);
  cell.first_error = m_first_error[a];
}

void Group::run_slice(std::size_t a, double seconds, pqxx::connection& db, WaitSampler& sampler,
                      Cell* cell) {
  pause();  // the previous arm's transactions end before this arm's start
  m_current = static_cast<int>(a);
  if (!cell) {
    sleep_for(seconds);
    return;
  }
  sleep_for(m_settle);
  const std::array<double, 5> before = snapshot(db);
  sampler.start();
  sleep_for(seconds);
  for (const auto& [state, count] : sampler.stop()) cell->waits[state] += count;
  record(*cell, a, before, db);
}

}  // namespace wb
