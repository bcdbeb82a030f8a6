// Child processes of the chaos driver: daemons it kills, stops and restarts, and the
// scripts/servers.sh calls it makes. Fork/exec only (no shell), environment prepared before
// the fork: the driver has threads, so the child calls nothing but async-signal-safe functions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace chaos {

/// The driver's environment without the variables named in `drop` ("NAME", or "PREFIX*"),
/// plus `extra` ("NAME=VALUE").
std::vector<std::string> environment(const std::vector<std::string>& drop,
                                     const std::vector<std::string>& extra = {});

/// Runs argv to completion with stdout+stderr appended to `log`; returns the exit code
/// (128+signal when killed). Throws std::runtime_error when it cannot be started.
int run_logged(const std::vector<std::string>& argv, const std::vector<std::string>& env,
               const std::string& log);

/// The last `lines` lines of a file (for error messages).
std::string tail_file(const std::string& path, int lines);

/// A daemon the driver supervises. Output is appended to its log across restarts; the child
/// gets SIGKILL if the driver dies (PR_SET_PDEATHSIG), so nothing outlives a killed driver.
/// Start, signal and reap it from one thread only (the death signal follows the thread that
/// forked).
class Child {
 public:
  enum class State { down, running, stopped };

  Child(std::string name, std::vector<std::string> argv, std::vector<std::string> env,
        std::string log);
  ~Child();  // SIGKILL and reap if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void start(const std::string& note);
  /// Sends `sig`; SIGSTOP/SIGCONT move the state between running and stopped.
  void signal(int sig);
  /// SIGKILL and reap (blocks until the kernel has removed it; immediate in practice).
  void kill_now();
  /// If the child exited since the last call: its exit code (128+signal) and state down.
  std::optional<int> reap();
  /// SIGTERM (SIGCONT first if stopped), then SIGKILL after `grace`; returns the exit code.
  int terminate(std::chrono::milliseconds grace);

  [[nodiscard]] const std::string& name() const { return m_name; }
  [[nodiscard]] const std::string& log() const { return m_log; }
  [[nodiscard]] State state() const { return m_state; }
  [[nodiscard]] pid_t pid() const { return m_pid; }
  [[nodiscard]] int starts() const { return m_starts; }

 private:
  std::string m_name;
  std::vector<std::string> m_argv;
  std::vector<std::string> m_env;
  std::string m_log;
  pid_t m_pid = -1;
  State m_state = State::down;
  int m_starts = 0;
};

}  // namespace chaos
