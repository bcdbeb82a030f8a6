// Retry pacing shared by the relay, the inbox and txboxctl. Internal, header-only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stop_token>

namespace txbox::detail {

/// The delay before retry number `attempt` (0 = first retry): min · 2^attempt, capped at max,
/// times a jitter factor in [0.5, 1] so that many clients do not retry in step.
inline std::chrono::milliseconds backoff(int attempt, std::chrono::milliseconds min,
                                         std::chrono::milliseconds max, std::mt19937_64& rng) {
  const double base = static_cast<double>(min.count()) * std::pow(2.0, std::clamp(attempt, 0, 30));
  const double capped = std::min(base, static_cast<double>(std::max(min, max).count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(capped * jitter(rng)));
}

/// Sleeps for `d` or until `stop` is requested, whichever comes first. Returns false when
/// stopped.
inline bool sleep_for(std::chrono::milliseconds d, const std::stop_token& stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, d, [] { return false; });
  return !stop.stop_requested();
}

}  // namespace txbox::detail
