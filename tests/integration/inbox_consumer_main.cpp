// A consumer process for the inbox's crash tests: applies each message to <schema>.effects
// through txbox::inbox until SIGTERM. Settings come as key=value arguments (config keys).
// TXBOX_TEST_HANDLER_SLEEP_US slows the handler to widen the window a kill can hit.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "txbox/detail/pq.hpp"
#include "txbox/inbox.hpp"

namespace pq = txbox::pq;

int main(int argc, char** argv) {
  std::map<std::string, std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (eq == std::string::npos) {
      std::cerr << "usage: txbox_test_consumer key=value...\n";
      return 2;
    }
    overrides[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  const char* sleep_us = std::getenv("TXBOX_TEST_HANDLER_SLEEP_US");
  const auto pause = std::chrono::microseconds(sleep_us ? std::atol(sleep_us) : 0);
  try {
    const auto cfg = txbox::load_consumer_config("", overrides);
    const std::string effects = "\"" + cfg.schema + "\".effects";
    txbox::Consumer consumer(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
      pq::exec(tx,
               "INSERT INTO " + effects +
                   " (message_id, topic, \"partition\", \"offset\") VALUES ($1, $2, $3, $4)",
               m.id, m.topic, m.partition, m.offset);
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    });
    consumer.run();
  } catch (const txbox::config_error& e) {
    spdlog::error("{}", e.what());
    return 3;
  } catch (const txbox::schema_error& e) {
    spdlog::error("{}", e.what());
    return 4;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
