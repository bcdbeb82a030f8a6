// txboxctl: the operators' and DBAs' tool. Backlog, leases and dead letters at a glance,
// dead-letter requeue, schema version check.
//
//   txboxctl status [--json]
//   txboxctl schema check [--require N]
//   txboxctl outbox dead list|show ID|requeue ID...|--all [--topic T]
//   txboxctl inbox dead list|show ID|requeue ID...|--all --consumer C
//
// Exit codes: 0 ok, 1 operation failed, 2 database unreachable, 3 usage/config, 4 schema,
// 5 a temporary database failure (nothing changed; retry).
#include <CLI/CLI.hpp>
#include <iostream>
#include <pqxx/except>

#include "ctl.hpp"
#include "txbox/conninfo.hpp"
#include "txbox/detail/failure.hpp"

namespace {

using namespace txbox::ctl;

// One line on stderr; the message never holds a password (connect() and clean_db_error()
// redact what libpq says).
int fail(int code, const std::string& message) {
  std::cerr << "txboxctl: " << message << '\n';
  return code;
}

// Any other failure, sorted by txbox's classifier: a temporary database failure (lock or
// statement timeout, deadlock, serialization, the server shutting down) exits 5 and says to
// retry (a read-only server: how to reach the primary); a lost connection 2; a permanent one
// (privileges, a missing table) 1, with its hint.
int fail_database(const txbox::detail::failure& f, const std::string& url) {
  using txbox::detail::failure_kind;
  const std::string msg = clean_db_error(f.message, url);
  const std::string state = f.sqlstate.empty() ? "" : " (SQLSTATE " + f.sqlstate + ")";
  if (f.kind == failure_kind::db_transient &&
      (f.sqlstate.empty() || f.sqlstate.starts_with("08"))) {
    return fail(k_exit_unreachable,
                "lost the database connection (" + txbox::redact_conninfo(url) + "): " + msg);
  }
  if (f.sqlstate == "25006") {
    // A standby, or a server being demoted. Through an address that follows the primary (a
    // VIP, HAProxy) a retry works once the failover is done; a node's own address never does.
    return fail(k_exit_transient,
                "the server is read-only (a standby), nothing was changed: " + msg +
                    ". Hint: retry once the failover is done if this address follows the "
                    "primary; otherwise list every node in --database-url with "
                    "target_session_attrs=read-write (docs/operations.md, PostgreSQL high "
                    "availability)");
  }
  if (f.kind == failure_kind::db_transient) {
    return fail(k_exit_transient, "temporary database failure" + state +
                                      ", nothing was changed; retry the command: " + msg);
  }
  if (f.sqlstate == "42501") {
    return fail(k_exit_failed,
                "permission denied: " + msg +
                    ". Hint: grant the txbox_relay role (outbox) and txbox_consumer (inbox) to "
                    "this user, see docs/txboxctl.md");
  }
  if (f.kind == failure_kind::db_permanent) {
    return fail(k_exit_failed, "database error" + state + ": " + msg +
                                   (f.hint.empty() ? "" : ". Hint: " + f.hint));
  }
  return fail(k_exit_failed, msg);
}

// What one of `outbox dead` and `inbox dead` parses into: its subcommands and their options.
struct DeadCommands {
  CLI::App* list = nullptr;
  CLI::App* show = nullptr;
  CLI::App* requeue = nullptr;
  DeadListOptions list_options{};
  std::int64_t show_id = 0;
  RequeueOptions requeue_options{};
};

// The whole command line: the subcommands (to tell which was given) and the values CLI11 fills
// in. It stays where it is while CLI11 holds pointers into it.
struct CommandLine {
  Options options{};
  CLI::App* status = nullptr;
  StatusOptions status_options{};
  CLI::App* schema_check = nullptr;
  int require = k_latest_version;
  DeadCommands outbox{};
  DeadCommands inbox{};
};

void add_common_options(CLI::App& app, Options& o) {
  app.add_option("--database-url", o.database_url,
                 "libpq URI or keyword=value conninfo (keep the password in PGPASSWORD or "
                 "~/.pgpass)")
      ->envname("TXBOX_DATABASE_URL");
  app.add_option("--schema", o.schema, "txbox schema name")
      ->envname("TXBOX_DATABASE_SCHEMA")
      ->capture_default_str();
  app.add_flag("--json", o.json, "machine-readable output (JSON on stdout)");
}

CLI::App* add_status(CLI::App& app, StatusOptions& so) {
  auto* status = app.add_subcommand(
      "status", "backlog per shard, oldest pending, leases, relays, dead letters, inbox offsets");
  status
      ->add_option("--lease-ttl-ms", so.lease_ttl_ms,
                   "a relay seen within this is live (the relays' relay.lease_ttl_ms)")
      ->check(CLI::Range(1L, 86'400'000L))
      ->capture_default_str();
  return status;
}

CLI::App* add_schema_check(CLI::App& app, int& require) {
  auto* schema = app.add_subcommand("schema", "schema version");
  schema->require_subcommand(1);
  auto* schema_check = schema->add_subcommand(
      "check", "compare the applied migrations with this build's; exit 4 when some are missing");
  schema_check
      ->add_option("--require", require, "version the schema must have (default: the latest)")
      ->check(CLI::Range(1, k_latest_version));
  return schema_check;
}

// `outbox dead list|show|requeue` or `inbox dead ...` (part: "outbox" or "inbox").
void add_dead(CLI::App& app, const char* part, DeadCommands& d) {
  const bool outbox = std::string_view(part) == "outbox";
  auto* p = app.add_subcommand(part, outbox ? "the outbox" : "the inbox");
  p->require_subcommand(1);
  auto* dead =
      p->add_subcommand("dead", outbox ? "messages Kafka refused for good (outbox_dead)"
                                       : "messages whose handler kept failing (inbox_dead)");
  dead->require_subcommand(1);
  DeadListOptions& lo = d.list_options;
  RequeueOptions& ro = d.requeue_options;
  d.list = dead->add_subcommand("list", "list dead messages, oldest first");
  d.list->add_option("--limit", lo.limit, "at most this many rows")
      ->check(CLI::Range(1L, 1'000'000L))
      ->capture_default_str();
  d.show = dead->add_subcommand("show", "one dead message with its headers and payload");
  d.show->add_option("id", d.show_id, "dead-letter id (from list)")->required();
  d.requeue = dead->add_subcommand(
      "requeue", outbox ? "move dead messages back into the outbox to be published again"
                        : "mark dead messages for their consumer to process again");
  auto* ids = d.requeue->add_option("id", ro.ids, "dead-letter ids (from list)");
  auto* all = d.requeue->add_flag("--all", ro.all, "every dead message (of --topic/--consumer)");
  ids->excludes(all);
  if (outbox) {
    d.list->add_option("--topic", lo.topic, "only this topic");
    d.requeue->add_option("--topic", ro.topic, "only this topic (with --all)")->needs(all);
  } else {
    d.list->add_option("--consumer", lo.consumer, "only this consumer");
    d.requeue->add_option("--consumer", ro.consumer,
                          "the consumer (required with --all; with ids, a check)");
  }
}

// What CLI11 cannot say: a requeue needs ids or --all, and an inbox --all needs --consumer.
void check_requeue(const CommandLine& cl) {
  for (const DeadCommands* d : {&cl.outbox, &cl.inbox}) {
    if (d->requeue->parsed() && d->requeue_options.ids.empty() && !d->requeue_options.all) {
      throw CLI::ValidationError("requeue: give the ids to requeue, or --all");
    }
  }
  if (cl.inbox.requeue->parsed() && cl.inbox.requeue_options.all &&
      cl.inbox.requeue_options.consumer.empty()) {
    throw CLI::ValidationError(
        "inbox dead requeue --all needs --consumer (requeue one consumer's messages at a "
        "time)");
  }
}

// Runs the command given; returns its exit code.
int run(const CommandLine& cl) {
  const Options& o = cl.options;
  if (cl.status->parsed()) return cmd_status(o, cl.status_options);
  if (cl.schema_check->parsed()) return cmd_schema_check(o, cl.require);
  if (cl.outbox.list->parsed()) return cmd_outbox_dead_list(o, cl.outbox.list_options);
  if (cl.outbox.show->parsed()) return cmd_outbox_dead_show(o, cl.outbox.show_id);
  if (cl.outbox.requeue->parsed()) return cmd_outbox_dead_requeue(o, cl.outbox.requeue_options);
  if (cl.inbox.list->parsed()) return cmd_inbox_dead_list(o, cl.inbox.list_options);
  if (cl.inbox.show->parsed()) return cmd_inbox_dead_show(o, cl.inbox.show_id);
  if (cl.inbox.requeue->parsed()) return cmd_inbox_dead_requeue(o, cl.inbox.requeue_options);
  return fail(k_exit_config, "no command given; see txboxctl --help");
}

// run(), with every failure turned into its exit code and one line on stderr.
int run_reporting_failures(const CommandLine& cl) {
  const std::string& url = cl.options.database_url;
  try {
    return run(cl);
  } catch (const txbox::config_error& e) {
    return fail(k_exit_config, e.what());
  } catch (const txbox::schema_error& e) {
    return fail(k_exit_schema, e.what());
  } catch (const unreachable_error& e) {
    return fail(k_exit_unreachable, e.what());
  } catch (const pqxx::broken_connection& e) {
    return fail(k_exit_unreachable, "lost the database connection (" + txbox::redact_conninfo(url) +
                                        "): " + clean_db_error(e.what(), url));
  } catch (const pqxx::in_doubt_error& e) {
    return fail(k_exit_unreachable,
                "lost the database connection during commit; the outcome is unknown, check "
                "with txboxctl status or list: " +
                    clean_db_error(e.what(), url));
  } catch (const txbox::error& e) {
    if (dynamic_cast<const txbox::transient_error*>(&e) == nullptr) {
      return fail(k_exit_failed, e.what());  // txboxctl's own: an unknown id, ...
    }
    return fail_database(txbox::detail::classify_current(), url);
  } catch (...) {
    return fail_database(txbox::detail::classify_current(), url);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "txboxctl: inspect and repair a txbox schema (outbox backlog, leases, relays, dead "
      "letters, inbox offsets, schema version)"};
  app.require_subcommand(1);
  app.fallthrough();  // the common options may also follow the subcommand

  CommandLine cl;
  add_common_options(app, cl.options);
  cl.status = add_status(app, cl.status_options);
  cl.schema_check = add_schema_check(app, cl.require);
  add_dead(app, "outbox", cl.outbox);
  add_dead(app, "inbox", cl.inbox);
  try {
    app.parse(argc, argv);
    check_requeue(cl);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? k_exit_ok : k_exit_config;
  }
  return run_reporting_failures(cl);
}
