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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "txboxctl: inspect and repair a txbox schema (outbox backlog, leases, relays, dead "
      "letters, inbox offsets, schema version)"};
  app.require_subcommand(1);
  app.fallthrough();  // the common options may also follow the subcommand

  Options o;
  app.add_option("--database-url", o.database_url,
                 "libpq URI or keyword=value conninfo (keep the password in PGPASSWORD or "
                 "~/.pgpass)")
      ->envname("TXBOX_DATABASE_URL");
  app.add_option("--schema", o.schema, "txbox schema name")
      ->envname("TXBOX_DATABASE_SCHEMA")
      ->capture_default_str();
  app.add_flag("--json", o.json, "machine-readable output (JSON on stdout)");

  // status
  StatusOptions so;
  auto* status = app.add_subcommand(
      "status", "backlog per shard, oldest pending, leases, relays, dead letters, inbox offsets");
  status
      ->add_option("--lease-ttl-ms", so.lease_ttl_ms,
                   "a relay seen within this is live (the relays' relay.lease_ttl_ms)")
      ->check(CLI::Range(1L, 86'400'000L))
      ->capture_default_str();

  // schema check
  auto* schema = app.add_subcommand("schema", "schema version");
  schema->require_subcommand(1);
  auto* schema_check = schema->add_subcommand(
      "check", "compare the applied migrations with this build's; exit 4 when some are missing");
  int require = k_latest_version;
  schema_check
      ->add_option("--require", require, "version the schema must have (default: the latest)")
      ->check(CLI::Range(1, k_latest_version));

  // outbox dead / inbox dead
  DeadListOptions outbox_list, inbox_list;
  RequeueOptions outbox_requeue, inbox_requeue;
  std::int64_t outbox_show_id = 0, inbox_show_id = 0;
  auto add_dead = [&](const char* part, DeadListOptions& lo, std::int64_t& show_id,
                      RequeueOptions& ro) {
    const bool outbox = std::string_view(part) == "outbox";
    auto* p = app.add_subcommand(part, outbox ? "the outbox" : "the inbox");
    p->require_subcommand(1);
    auto* dead =
        p->add_subcommand("dead", outbox ? "messages Kafka refused for good (outbox_dead)"
                                         : "messages whose handler kept failing (inbox_dead)");
    dead->require_subcommand(1);
    auto* list = dead->add_subcommand("list", "list dead messages, oldest first");
    list->add_option("--limit", lo.limit, "at most this many rows")
        ->check(CLI::Range(1L, 1'000'000L))
        ->capture_default_str();
    auto* show = dead->add_subcommand("show", "one dead message with its headers and payload");
    show->add_option("id", show_id, "dead-letter id (from list)")->required();
    auto* requeue = dead->add_subcommand(
        "requeue", outbox ? "move dead messages back into the outbox to be published again"
                          : "mark dead messages for their consumer to process again");
    auto* ids = requeue->add_option("id", ro.ids, "dead-letter ids (from list)");
    auto* all = requeue->add_flag("--all", ro.all, "every dead message (of --topic/--consumer)");
    ids->excludes(all);
    if (outbox) {
      list->add_option("--topic", lo.topic, "only this topic");
      requeue->add_option("--topic", ro.topic, "only this topic (with --all)")->needs(all);
    } else {
      list->add_option("--consumer", lo.consumer, "only this consumer");
      requeue->add_option("--consumer", ro.consumer,
                          "the consumer (required with --all; with ids, a check)");
    }
    return std::tuple{list, show, requeue};
  };
  auto [outbox_list_cmd, outbox_show_cmd, outbox_requeue_cmd] =
      add_dead("outbox", outbox_list, outbox_show_id, outbox_requeue);
  auto [inbox_list_cmd, inbox_show_cmd, inbox_requeue_cmd] =
      add_dead("inbox", inbox_list, inbox_show_id, inbox_requeue);

  try {
    app.parse(argc, argv);
    for (auto* requeue : {outbox_requeue_cmd, inbox_requeue_cmd}) {
      const auto& ro = requeue == outbox_requeue_cmd ? outbox_requeue : inbox_requeue;
      if (requeue->parsed() && ro.ids.empty() && !ro.all) {
        throw CLI::ValidationError("requeue: give the ids to requeue, or --all");
      }
    }
    if (inbox_requeue_cmd->parsed() && inbox_requeue.all && inbox_requeue.consumer.empty()) {
      throw CLI::ValidationError(
          "inbox dead requeue --all needs --consumer (requeue one consumer's messages at a "
          "time)");
    }
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? k_exit_ok : k_exit_config;
  }

  const std::string& url = o.database_url;
  try {
    if (status->parsed()) return cmd_status(o, so);
    if (schema_check->parsed()) return cmd_schema_check(o, require);
    if (outbox_list_cmd->parsed()) return cmd_outbox_dead_list(o, outbox_list);
    if (outbox_show_cmd->parsed()) return cmd_outbox_dead_show(o, outbox_show_id);
    if (outbox_requeue_cmd->parsed()) return cmd_outbox_dead_requeue(o, outbox_requeue);
    if (inbox_list_cmd->parsed()) return cmd_inbox_dead_list(o, inbox_list);
    if (inbox_show_cmd->parsed()) return cmd_inbox_dead_show(o, inbox_show_id);
    if (inbox_requeue_cmd->parsed()) return cmd_inbox_dead_requeue(o, inbox_requeue);
    return fail(k_exit_config, "no command given; see txboxctl --help");
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
