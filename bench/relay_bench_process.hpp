// The relay benchmark's child processes: txbox-relay started and stopped, and what /proc
// says of a process (peak RSS, CPU time).
#pragma once

#include <sys/types.h>

#include <string>

namespace bench {

/// A started txbox-relay.
struct Child {
  pid_t pid;
};

/// Starts g_relay named `name` on g_pg and g_kafka (--no-notify unless `notify`); its stderr
/// goes to /tmp/bench-NAME.log.
Child start_relay(const std::string& name, bool notify);
/// SIGTERM, then waits for it.
void stop(Child c);
/// Peak RSS (VmHWM) of `pid` in KiB, or -1.
long rss_kib(pid_t pid);
/// CPU seconds (user + system) used so far by `pid`.
double cpu_seconds(pid_t pid);

}  // namespace bench
