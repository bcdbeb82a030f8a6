// The relay benchmark's child processes: txbox-relay started and stopped, and what /proc
// says of a process (peak RSS, CPU time).
#pragma once

#include "bench_metrics.hpp"

#include <sys/types.h>

#include <pqxx/connection>

#include <string>

namespace bench {

/// A started txbox-relay.
struct Child {
  pid_t pid;
};

/// How a relay delivers: the default, or --exactly-once (Kafka transactions).
enum class Delivery { at_least_once, exactly_once };
inline const char* delivery_name(Delivery d) {
  return d == Delivery::exactly_once ? "exactly_once" : "at_least_once";
}

/// How an idle relay learns of new rows: the probe of the outbox id sequence (the default since
/// migration V6), or V5's wake-up, a NOTIFY from a trigger in every writer's transaction
/// (the relay LISTENs and does not probe; install_notify_trigger puts the trigger back).
enum class Wakeup { probe, notify };
inline const char* wakeup_name(Wakeup w) {
  return w == Wakeup::notify ? "NOTIFY (V5 trigger)" : "probe (V6)";
}
/// V5's statement trigger on txbox.outbox (pg_notify per inserting statement), or none.
void install_notify_trigger(pqxx::connection& c, bool on);

/// Starts g_relay named `name` on g_pg and g_kafka with `wakeup` and `delivery`, serving
/// /metrics on 127.0.0.1:`http_port` unless 0; its stderr goes to /tmp/bench-NAME.log.
Child start_relay(const std::string& name, Wakeup wakeup = Wakeup::probe,
                  Delivery delivery = Delivery::at_least_once, int http_port = 0);
/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick).
int free_port();
/// SIGTERM, then waits for it.
void stop(Child c);
/// Peak RSS (VmHWM) of `pid` in KiB, or -1.
long rss_kib(pid_t pid);
/// CPU seconds (user + system) used so far by `pid`.
double cpu_seconds(pid_t pid);

/// CPU seconds used so far on this machine, by who: PostgreSQL (every process named
/// postgres), the Kafka broker (java), txbox-relay processes, this benchmark, and the whole
/// machine (busy: all but idle and iowait; total: busy + idle + iowait, over all cores).
struct CpuSplit {
  double postgres = 0, broker = 0, relay = 0, bench = 0, busy = 0, total = 0;
};
CpuSplit cpu_split();
/// What was used between two samples.
CpuSplit operator-(const CpuSplit& later, const CpuSplit& earlier);

}  // namespace bench
