// signal_guard: the handler bumps a lock-free counter, nothing else.
#include "txbox/detail/signal_guard.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>

namespace txbox::detail {
namespace {

std::atomic<unsigned> g_signals{0};
static_assert(std::atomic<unsigned>::is_always_lock_free,
              "a signal handler needs a lock-free atomic");

std::mutex g_install_mutex;
int g_guards = 0;  // guarded by g_install_mutex
struct sigaction g_old_int {};
struct sigaction g_old_term {};

extern "C" void on_stop_signal(int) {
  g_signals.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

signal_guard::signal_guard() {
  std::lock_guard lock(g_install_mutex);
  m_seen_at_start = g_signals.load();
  if (g_guards++ > 0) return;
  struct sigaction act {};
  act.sa_handler = &on_stop_signal;
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, &g_old_int);
  sigaction(SIGTERM, &act, &g_old_term);
}

signal_guard::~signal_guard() {
  if (m_watcher.joinable()) {
    m_watcher.request_stop();
    m_watcher.join();
  }
  std::lock_guard lock(g_install_mutex);
  if (--g_guards > 0) return;
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool signal_guard::signalled() const noexcept {
  return g_signals.load() != m_seen_at_start;
}

void signal_guard::forward_to(std::stop_source source) {
  m_watcher = std::jthread([this, source](std::stop_token own) mutable {
    while (!own.stop_requested()) {
      if (signalled()) {
        source.request_stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
}

}  // namespace txbox::detail
