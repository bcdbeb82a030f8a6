// One log line per distinct problem: the relay's health logs when a problem starts or changes,
// not on every retry, and (with a repeat interval) says again that a problem an operator must
// fix is still there. Not thread-safe (Health holds its lock). Internal to the relay.
#pragma once

#include <chrono>
#include <string>

namespace txbox::relay {

class ProblemThrottle {
 public:
  using clock = std::chrono::steady_clock;

  /// `repeat`: how often a line about the same problem is due again (default: never).
  explicit ProblemThrottle(clock::duration repeat = clock::duration::max()) : m_repeat(repeat) {}

  /// True when a line about `problem` is due at `now`: it differs from the current problem,
  /// or the repeat interval passed since the last line. It then becomes the current problem.
  bool admit(const std::string& problem, clock::time_point now) {
    if (problem == m_current && now - m_logged < m_repeat) return false;
    m_current = problem;
    m_logged = now;
    return true;
  }
  /// The problem last admitted; empty: none (or cleared).
  [[nodiscard]] const std::string& current() const { return m_current; }
  [[nodiscard]] bool active() const { return !m_current.empty(); }
  /// The problem is over: the next one (even the same again) is logged at once.
  void clear() { m_current.clear(); }

 private:
  clock::duration m_repeat;
  std::string m_current;
  clock::time_point m_logged{};
};

}  // namespace txbox::relay
