// txbox_chaos: fault injection against the whole pipeline, on servers of its own.
//
// It starts a throwaway PostgreSQL and Kafka broker (scripts/servers.sh, in a directory of
// its own, so that killing them disturbs no other test), relays (txbox-relay) and consumers
// (txbox_chaos_projector, on txbox::inbox). Writer threads commit messages with a sequence
// number per key (txbox::outbox, and a row in chaos.sent in the same transaction), while a
// seeded schedule kills, stops and restarts relays, consumers, the broker and PostgreSQL and
// terminates backends. With --brokers 3 it runs on a replicated cluster (RF 3, min.insync 2,
// relays under --strict-durability) and the broker faults become partition leader kills,
// broker pauses and disk loss, one broker at a time. Then it waits for the pipeline to drain, stops
// everything and checks:
//   - every committed message applied exactly once (chaos.applied has no unique constraint,
//     so a second effect is a second row; lost = committed without a row);
//   - per key, the effects are in order: each applied row records the key's sequence number
//     before it, read under a row lock, i.e. in commit order; a violation is a row whose
//     seq is not prev_seq + 1 (a key's effects must be 1, 2, 3, ... with no gap, repeat or
//     step back, whatever the relays re-sent: the inbox absorbs re-sends);
//   - the outbox drained, the consumers at the end of every partition;
//   - dead letters exactly where injected: poison messages (the handler always throws) in
//     txbox.inbox_dead, oversize rows in txbox.outbox_dead, nothing else.
// Prints a table and exits 1 on any violation, naming the seed to replay the schedule.
//
//   txbox_chaos [--seed N] [--messages N] [--faults N] [--write-seconds S] ... (--help)
//
// This file: main, the signals. The command line: options.cpp; the run loop: driver.cpp;
// the fault injection: faults.cpp; the drain check: monitor.cpp; the result: report.cpp.
#include <signal.h>

#include <atomic>
#include <csignal>
#include <exception>
#include <iostream>

#include "driver.hpp"
#include "options.hpp"

namespace {

// Interruption (SIGINT/SIGTERM): stop injecting, clean up, exit 130.
std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) {
  g_interrupted = true;
}

}  // namespace

int main(int argc, char** argv) {
  const chaos::Options o = chaos::parse_options(argc, argv);
  struct sigaction act {};
  act.sa_handler = &on_interrupt;
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, nullptr);
  sigaction(SIGTERM, &act, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    chaos::Driver driver(o, g_interrupted);
    return driver.run();
  } catch (const std::exception& e) {
    std::cerr << "txbox_chaos: FAILED (seed " << o.work.seed << "): " << e.what() << "\n";
    return 3;
  }
}
