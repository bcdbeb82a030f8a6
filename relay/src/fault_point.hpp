// Fault-injection points for the tests: compiled only into test builds (TXBOX_FAULT_POINTS,
// CMake option of the same name, on when the tests are built). Internal to the relay.
//   TXBOX_FAULT_POINT=<name>:<n>[:stop]  the n-th time the relay reaches point <name>, it
//                                  SIGKILLs itself (as a crash at that instant would), or
//                                  with ":stop" SIGSTOPs itself (a stall; SIGCONT resumes)
// Points: after_publish (Kafka acknowledged, or committed, a round; its DELETE not run yet),
// before_commit (exactly_once: a lane's rows acknowledged, commit_transaction not called).
#pragma once

#ifdef TXBOX_FAULT_POINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#endif

namespace txbox::relay {

#ifdef TXBOX_FAULT_POINTS
inline void fault_point(const char* name) {
  static const std::string spec = [] {
    const char* v = std::getenv("TXBOX_FAULT_POINT");
    return std::string(v ? v : "");
  }();
  static std::atomic<long> reached{0};  // one point per process is armed at a time
  const std::string prefix = std::string(name) + ":";
  if (!spec.starts_with(prefix)) return;
  if (++reached != std::atol(spec.c_str() + prefix.size())) return;
  ::kill(::getpid(), spec.ends_with(":stop") ? SIGSTOP : SIGKILL);
}
#else
inline void fault_point(const char*) {}
#endif

/// True in a build with fault points (the tests that need them check it).
inline constexpr bool fault_points_built =
#ifdef TXBOX_FAULT_POINTS
    true;
#else
    false;
#endif

}  // namespace txbox::relay
