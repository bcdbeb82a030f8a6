// Stopping on SIGINT/SIGTERM the async-signal-safe way. Internal (not installed).
#pragma once

#include <stop_token>
#include <thread>

namespace txbox::detail {

/// Installs handlers for SIGINT and SIGTERM that only bump an atomic counter, and restores
/// the previous handlers when the last guard of the process is destroyed (also when the
/// guarded code throws). Each guard sees only the signals that arrive after it was made, so
/// several guards (several consumers' run()) can live side by side.
/// Example: signal_guard g; g.forward_to(source);  // source.request_stop() on SIGTERM
class signal_guard {
 public:
  signal_guard();
  ~signal_guard();  // stops the watcher thread (joins it: at most one poll tick)
  signal_guard(const signal_guard&) = delete;
  signal_guard& operator=(const signal_guard&) = delete;

  /// True once SIGINT or SIGTERM arrived since this guard was made.
  [[nodiscard]] bool signalled() const noexcept;

  /// Starts a thread that calls `source.request_stop()` within ~20 ms of a signal (a signal
  /// handler may not call it: request_stop is not async-signal-safe).
  void forward_to(std::stop_source source);

 private:
  unsigned m_seen_at_start;
  std::jthread m_watcher;
};

}  // namespace txbox::detail
