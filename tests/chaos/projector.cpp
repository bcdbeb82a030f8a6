// The chaos driver's consumer process: a projector on txbox::inbox. Every message's effect is
// one call of chaos.apply() in the batch's transaction, which appends a row to chaos.applied
// (no unique constraint: an effect applied twice shows as two rows) with the sequence number
// the key had before (chaos.key_state, locked FOR UPDATE, so "before" is in commit order).
// Payloads: "<key> <seq>" for ordinary messages; "poison <n>" makes the handler throw every
// time (the message must end in txbox.inbox_dead and nowhere else).
//
//   txbox_chaos_projector key=value...   (consumer config keys, as load_consumer_config takes)
// CHAOS_PROCESS names the process in chaos.applied. Runs until SIGTERM; at start it waits
// for the database with backoff, as a daemon under a supervisor would.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "txbox/detail/pq.hpp"
#include "txbox/inbox.hpp"

namespace pq = txbox::pq;

namespace {

struct Effect {
  std::string key;
  int seq = 0;
};

Effect parse_payload(const std::string& payload) {
  if (payload.starts_with("poison")) {
    throw std::runtime_error("injected poison message: this handler always fails on it");
  }
  const auto space = payload.find(' ');
  if (space == std::string::npos || space == 0) {
    throw std::runtime_error("payload is not '<key> <seq>': " + payload.substr(0, 40));
  }
  return {payload.substr(0, space), std::stoi(payload.substr(space + 1))};
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (eq == std::string::npos) {
      std::cerr << "usage: txbox_chaos_projector key=value...\n";
      return 2;
    }
    overrides[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  const char* process_env = std::getenv("CHAOS_PROCESS");
  const std::string process = process_env ? process_env : "projector";
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ " + process + ": %v");
  try {
    const auto cfg = txbox::load_consumer_config("", overrides);
    const auto handler = [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
      const Effect e = parse_payload(m.payload);
      pq::exec(tx, "SELECT chaos.apply($1, $2, $3, $4, $5, $6)", e.key, e.seq, m.id, process,
               m.partition, m.offset);
    };
    std::unique_ptr<txbox::Consumer> consumer;
    auto delay = std::chrono::milliseconds(100);
    bool warned = false;
    while (!consumer) {
      try {
        consumer = std::make_unique<txbox::Consumer>(cfg, handler);
      } catch (const txbox::transient_error& e) {
        if (!warned) spdlog::warn("{}; retrying with backoff", e.what());
        warned = true;
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(2000));
      }
    }
    consumer->run();
    const auto st = consumer->stats();
    spdlog::info(
        "stopped: processed {}, duplicates {}, dead {}, handler failures {}, rebalances {}",
        st.processed, st.duplicates, st.dead, st.failures, st.rebalances);
  } catch (const txbox::config_error& e) {
    spdlog::error("configuration: {}", e.what());
    return 3;
  } catch (const txbox::schema_error& e) {
    spdlog::error("schema: {}", e.what());
    return 4;
  } catch (const std::exception& e) {
    spdlog::error("stopped by an error: {}", e.what());
    return 1;
  }
  return 0;
}
