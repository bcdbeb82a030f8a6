// txbox-relay: the daemon. Config from TOML, TXBOX_* environment variables and flags.
#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "broker_version.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/signal_guard.hpp"
#include "txbox/relay.hpp"

namespace {

// Exit codes: 0 clean stop, 1 runtime failure, 2 usage, 3 config (also a database.url the
// server refuses: a database that does not exist, failed authentication, an option value libpq
// refuses), 4 schema, 5 a target topic below the durability minimum under --strict-durability.
constexpr int k_exit_config = 3;
constexpr int k_exit_schema = 4;
constexpr int k_exit_durability = 5;

// The /metrics, /healthz, /readyz server on its own thread; stopped and joined when destroyed.
struct HttpServer {
  httplib::Server server;
  std::thread thread;
  bool listen(const std::string& address) {
    const auto colon = address.rfind(':');
    if (!server.bind_to_port(address.substr(0, colon), std::stoi(address.substr(colon + 1)))) {
      return false;
    }
    thread = std::thread([this] { server.listen_after_bind(); });
    return true;
  }
  void stop() {
    if (!thread.joinable()) return;
    server.stop();
    thread.join();
  }
  HttpServer() = default;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer() { stop(); }
};

// Serves /metrics, /healthz and /readyz on `address` from `live` (not ready while it is null).
bool serve_http(HttpServer& http, const std::string& address, std::atomic<txbox::Relay*>& live) {
  http.server.Get("/metrics", [&live](const httplib::Request&, httplib::Response& res) {
    txbox::Relay* r = live.load();
    res.set_content(r ? r->metrics_text()
                      : "# HELP txbox_relay_ready 1 when the database and Kafka are "
                        "reachable.\n# TYPE txbox_relay_ready gauge\ntxbox_relay_ready 0\n",
                    "text/plain; version=0.0.4");
  });
  http.server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.server.Get("/readyz", [&live](const httplib::Request&, httplib::Response& res) {
    txbox::Relay* r = live.load();
    const bool ready = r && r->stats().ready;
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });
  return http.listen(address);
}

// What the command line asks for.
struct CommandLine {
  std::string config_path;
  std::map<std::string, std::string> overrides;  // from the flags
  std::string log_level = "info";
  bool check_config = false;
};

// Parses the command line into `out`; an exit code when the process exits now (--help, a
// usage error).
std::optional<int> parse_command_line(int argc, char** argv, CommandLine& out) {
  CLI::App app{"txbox-relay: publishes the txbox outbox to Kafka (acks=all, idempotent)"};
  std::string database_url, schema, bootstrap, name, http_listen;
  bool strict = false, no_notify = false, exactly_once = false;
  std::string wait_for_standbys, standby_names;
  app.add_option("-c,--config", out.config_path, "TOML config file")->check(CLI::ExistingFile);
  app.add_option("--database-url", database_url, "libpq URI or conninfo (database.url)");
  app.add_option("--schema", schema, "txbox schema (database.schema)");
  app.add_option("--kafka-bootstrap-servers", bootstrap, "kafka.bootstrap.servers");
  app.add_option("--name", name, "relay identity (relay.name), default host:pid");
  app.add_option("--http-listen", http_listen, "address for /metrics, /healthz, /readyz");
  app.add_option("--log-level", out.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_flag("--strict-durability", strict,
               "refuse topics with replication.factor < 3, min.insync.replicas < 2 or unclean "
               "leader election: exit 5 at start, hold their messages later");
  app.add_option("--wait-for-standbys", wait_for_standbys,
                 "publish a round only after N standbys flushed its WAL "
                 "(relay.wait_for_standbys; needs pg_monitor; 0: off)");
  app.add_option("--standby-names", standby_names,
                 "comma-separated application_names of the standbys --wait-for-standbys "
                 "counts (relay.standby_names; default: every physical standby but WAL "
                 "archivers and base backups)");
  app.add_flag("--exactly-once", exactly_once,
               "Kafka transactions per lane of shards: read_committed consumers see each "
               "message once (relay.delivery = exactly_once; needs migration V5)");
  app.add_flag("--no-notify", no_notify,
               "do not LISTEN (relay.listen_notify = false, the default since migration V6)");
  app.add_flag("--check-config", out.check_config,
               "validate the config, print it (secrets hidden), exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto& overrides = out.overrides;
  if (!database_url.empty()) overrides["database.url"] = database_url;
  if (!schema.empty()) overrides["database.schema"] = schema;
  if (!bootstrap.empty()) overrides["kafka.bootstrap.servers"] = bootstrap;
  if (!name.empty()) overrides["relay.name"] = name;
  if (!http_listen.empty()) overrides["http.listen"] = http_listen;
  if (strict) overrides["relay.strict_durability"] = "true";
  if (no_notify) overrides["relay.listen_notify"] = "false";
  if (exactly_once) overrides["relay.delivery"] = "exactly_once";
  if (!wait_for_standbys.empty()) overrides["relay.wait_for_standbys"] = wait_for_standbys;
  if (!standby_names.empty()) overrides["relay.standby_names"] = standby_names;
  return std::nullopt;
}

// Runs the relay until SIGINT/SIGTERM; the process's exit code.
int run(const txbox::RelayConfig& cfg) {
  // SIGINT/SIGTERM only bump an atomic; a watcher thread requests the stop.
  std::stop_source stop;
  txbox::detail::signal_guard signals;
  signals.forward_to(stop);
  std::signal(SIGPIPE, SIG_IGN);

  spdlog::info("starting with {}", txbox::relay::client_versions());
  try {
    // Warns once, from a thread of its own, when librdkafka is too old for a Kafka 4 broker.
    const txbox::relay::BrokerVersionCheck broker_check(cfg.kafka);
    // Set once the relay is up; the HTTP handlers read it (not ready until then).
    std::atomic<txbox::Relay*> live{nullptr};
    std::unique_ptr<txbox::Relay> relay;
    HttpServer http;
    if (!cfg.http_listen.empty()) {
      if (!serve_http(http, cfg.http_listen, live)) {
        spdlog::critical("cannot listen on {} (http.listen)", cfg.http_listen);
        return k_exit_config;
      }
      spdlog::info("http: serving /metrics, /healthz, /readyz on {}", cfg.http_listen);
    }
    // Start-up: wait for the database with backoff (a config or schema problem exits).
    relay = txbox::start_relay(cfg, stop.get_token());
    if (!relay) return 0;
    live = relay.get();
    relay->run(stop.get_token());
    live = nullptr;
    http.stop();
    return 0;
  } catch (const txbox::config_error& e) {
    spdlog::critical("invalid configuration: {}", e.what());
    return k_exit_config;
  } catch (const txbox::schema_error& e) {
    spdlog::critical("{}", e.what());
    return k_exit_schema;
  } catch (const txbox::durability_error& e) {
    spdlog::critical("{}", e.what());
    return k_exit_durability;
  } catch (const std::exception& e) {
    spdlog::critical("stopped by an unexpected error: {}", txbox::redact_conninfo(e.what()));
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine cl;
  if (const auto code = parse_command_line(argc, argv, cl)) return *code;
  spdlog::set_level(spdlog::level::from_str(cl.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ txbox-relay: %v");

  txbox::RelayConfig cfg;
  try {
    cfg = txbox::load_relay_config(cl.config_path, cl.overrides);
  } catch (const txbox::config_error& e) {
    spdlog::critical("invalid configuration: {}", e.what());
    return k_exit_config;
  }
  if (cl.check_config) {
    std::cout << txbox::describe_relay_config(cfg) << "configuration ok\n";
    return 0;
  }
  return run(cfg);
}
