// The consumer's counters (thread-safe book) and their Prometheus text.
#pragma once

#include <mutex>
#include <string>

#include "batch_runner.hpp"
#include "housekeeping.hpp"

namespace txbox::inbox {

class stats_book {
 public:
  stats_book();
  void batch(const batch_result& r);  ///< counts, failures, handler latencies
  void requeue(const requeue_result& r);
  void rebalance();
  void database_retry();
  void set_ready(bool ready);
  void set_lag(std::map<std::string, std::int64_t> lag);
  /// A copy, with `cleaned` from the retention worker.
  [[nodiscard]] ConsumerStats snapshot(std::uint64_t cleaned) const;

 private:
  mutable std::mutex m_mutex;
  ConsumerStats m_st;
};

/// Prometheus text exposition of `st` for consumer `name`.
std::string metrics_text(const ConsumerStats& st, const std::string& name);

}  // namespace txbox::inbox
