// The chaos driver's command line: the usage text and the option parser.
#include "options.hpp"

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

namespace chaos {
namespace {

[[noreturn]] void usage(int code) {
  std::cout << R"(usage: txbox_chaos [options]
  --seed N             schedule seed (default: random; printed, and named on failure)
  --messages N         messages to commit (default 20000), spread over --keys keys
  --faults N           faults to inject (default 30)
  --write-seconds S    pace the writers to finish in about S seconds (default 60); the
                       faults fall between 5 s and S + 10 s after the writes start
  --keys N             ordering keys (default 200)
  --writers N          writer threads (default 4)
  --relays N           txbox-relay processes (default 3)
  --consumers N        projector processes, one consumer group (default 2)
  --partitions N       partitions of the topic (default 6)
  --brokers N          1: one broker (default); 3: a replicated cluster (RF 3, min ISR 2),
                       whose faults add leader kills, broker pauses and disk loss
  --poison N           poison messages injected (default 3)
  --oversize N         oversize outbox rows injected (default 2)
  --lease-ttl-ms N     relay lease (default 4000)
  --session-timeout-ms N  consumer session timeout (default 3000)
  --relay-linger-ms N  the relays' kafka linger.ms (default 100: batches stay in flight
                       long enough for faults to land on them)
  --pg-failover        PostgreSQL as primary + synchronous standby on the multi-host
                       conninfo, relays with --wait-for-standbys 1, and the fault
                       "kill the primary, promote the standby, attach a new one"
  --exactly-once       relays with --exactly-once (Kafka transactions): the log itself must
                       then hold each message once, with no stale copy (the log audit)
  --drain-timeout S    how long to wait for the pipeline to drain (default 300)
  --stall-timeout S    stop waiting when the drain made no progress for S s (default 90)
  --dir DIR            servers, logs (default: a new /tmp/txbox-chaos.XXXXXX)
  --keep               keep the broker's data after a pass (always kept after a failure)
Exit: 0 pass, 1 a violation, 2 usage, 3 the servers or the setup failed.
)";
  std::exit(code);
}

}  // namespace

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "txbox_chaos: " << a << " needs a value\n";
        usage(2);
      }
      return argv[++i];
    };
    const auto number = [&](long lo, long hi) -> long {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < lo || n > hi) {
        std::cerr << "txbox_chaos: " << a << " wants an integer in [" << lo << ", " << hi
                  << "], not '" << v << "'\n";
        usage(2);
      }
      return n;
    };
    if (a == "--help" || a == "-h") {
      usage(0);
    } else if (a == "--seed") {
      const std::string v = value();
      char* end = nullptr;
      o.work.seed = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end) usage(2);
      o.seed_given = true;
    } else if (a == "--messages") {
      o.work.messages = static_cast<int>(number(1, 100'000'000));
    } else if (a == "--faults") {
      o.faults = static_cast<int>(number(0, 100'000));
    } else if (a == "--write-seconds") {
      o.work.write_seconds = static_cast<double>(number(1, 86'400));
    } else if (a == "--keys") {
      o.work.keys = static_cast<int>(number(1, 100'000));
    } else if (a == "--writers") {
      o.work.writers = static_cast<int>(number(1, 64));
    } else if (a == "--relays") {
      o.relays = static_cast<int>(number(1, 16));
    } else if (a == "--consumers") {
      o.consumers = static_cast<int>(number(1, 16));
    } else if (a == "--brokers") {
      o.brokers = static_cast<int>(number(1, 3));
      if (o.brokers == 2) {
        std::cerr << "txbox_chaos: --brokers is 1 (a single broker) or 3 (a cluster)\n";
        usage(2);
      }
    } else if (a == "--partitions") {
      o.partitions = static_cast<int>(number(1, 256));
    } else if (a == "--poison") {
      o.work.poison = static_cast<int>(number(0, 100));
    } else if (a == "--oversize") {
      o.work.oversize = static_cast<int>(number(0, 100));
    } else if (a == "--lease-ttl-ms") {
      o.lease_ttl_ms = static_cast<int>(number(1000, 600'000));
    } else if (a == "--session-timeout-ms") {
      o.session_timeout_ms = static_cast<int>(number(1000, 600'000));
    } else if (a == "--relay-linger-ms") {
      o.relay_linger_ms = static_cast<int>(number(0, 10'000));
    } else if (a == "--drain-timeout") {
      o.drain_timeout_s = static_cast<double>(number(10, 86'400));
    } else if (a == "--stall-timeout") {
      o.stall_timeout_s = static_cast<int>(number(10, 86'400));
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--pg-failover") {
      o.pg_failover = true;
    } else if (a == "--exactly-once") {
      o.exactly_once = true;
    } else {
      std::cerr << "txbox_chaos: unknown option " << a << "\n";
      usage(2);
    }
  }
  if (o.work.keys < o.work.writers) o.work.writers = o.work.keys;
  if (!o.seed_given) o.work.seed = std::random_device{}() % 1'000'000'000ULL;
  return o;
}

}  // namespace chaos
