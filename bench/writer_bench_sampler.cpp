// The writers' bench: what the writers' backends wait for, from pg_stat_activity.
#include <fmt/format.h>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>

#include <chrono>
#include <fstream>
#include <sstream>

#include "txbox/detail/pq.hpp"
#include "writer_bench.hpp"

namespace pq = txbox::pq;

namespace wb {

WaitSampler::WaitSampler(const std::string& pg) : m_conn(pg) {
  m_thread = std::thread([this] { loop(); });
}

WaitSampler::~WaitSampler() {
  m_quit = true;
  if (m_thread.joinable()) m_thread.join();
}

void WaitSampler::start() {
  {
    const std::lock_guard lock(m_mutex);
    m_counts.clear();
  }
  m_recording = true;
}

std::map<std::string, long> WaitSampler::stop() {
  m_recording = false;
  const std::lock_guard lock(m_mutex);
  return m_counts;
}

// Each writer's backend as one of: its wait event ("Lock:object", "IO:WALSync"), "CPU" (active,
// not waiting), "client (in tx)" (idle in transaction: waiting for the writer's next statement)
// or "client (between tx)" (idle).
void WaitSampler::loop() {
  const std::string sql =
      "SELECT CASE WHEN state = 'idle' THEN 'client (between tx)' "
      "WHEN state LIKE 'idle in transaction%' THEN 'client (in tx)' "
      "WHEN wait_event IS NULL THEN 'CPU' ELSE wait_event_type || ':' || wait_event END "
      "FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()";
  while (!m_quit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!m_recording) continue;
    const pqxx::result r = pq::exec(pqxx::nontransaction(m_conn), sql, std::string("writer_bench"));
    const std::lock_guard lock(m_mutex);
    for (const auto& row : r) ++m_counts[row[0].c_str()];
  }
}

double process_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

std::string top_waits(const std::map<std::string, long>& counts, std::size_t n) {
  std::vector<std::pair<long, std::string>> v;
  long total = 0;
  for (const auto& [state, c] : counts) {
    v.emplace_back(c, state);
    total += c;
  }
  if (total == 0) return "-";
  std::sort(v.rbegin(), v.rend());
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double share = 100.0 * static_cast<double>(v[i].first) / static_cast<double>(total);
    const bool lock = v[i].second.starts_with("Lock:") || v[i].second.starts_with("LWLock:");
    if (i >= n && !(lock && share >= 1)) continue;
    out += fmt::format("{}{} {:.0f}%", out.empty() ? "" : ", ", v[i].second, share);
  }
  return out;
}

}  // namespace wb
