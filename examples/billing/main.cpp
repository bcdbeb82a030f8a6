// billing: consume, transform, produce. Consumes the order service's OrderPlaced messages
// through txbox::inbox and, in the inbox's transaction, writes an invoice and enqueues its
// InvoiceCreated message with txbox::Outbox: the invoice, its message, the OrderPlaced's id
// and the partition's offset commit together, or none of them does. Runs until SIGTERM/SIGINT.
//   billing [--config FILE] [--invoices-topic invoices] [KEY=VALUE ...]
//
// Settings: the TOML file (see billing.toml), then TXBOX_* environment variables, then
// KEY=VALUE arguments (database.url=..., consumer.max_batch=..., kafka.<property>=...).
// The database role needs txbox_consumer and txbox_writer, and INSERT on billing.invoices:
//   GRANT txbox_consumer, txbox_writer TO billing;
// See docs/inbox.md, "Consume, transform, produce".
#include <txbox/inbox.hpp>
#include <txbox/outbox.hpp>

#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

namespace {

// Creates billing.invoices unless it exists (so that billing can run as a role without the
// CREATE privilege once the table is there).
void create_tables(const std::string& database_url) {
  pqxx::connection conn(database_url);
  pqxx::work tx(conn);
  if (!tx.exec("SELECT to_regclass('billing.invoices') IS NULL")[0][0].as<bool>()) return;
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('billing tables'))");
  tx.exec(
      "CREATE SCHEMA IF NOT EXISTS billing; "
      // No unique constraint on order_id on purpose: this table proves exactly-once (one
      // invoice per order) rather than enforcing it. A real service would add one.
      "CREATE TABLE IF NOT EXISTS billing.invoices ("
      "  invoice_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
      "  order_message_id text NOT NULL, order_id bigint NOT NULL, customer text NOT NULL, "
      "  customer_seq bigint NOT NULL, amount_cents bigint NOT NULL, "
      "  created_at timestamptz NOT NULL DEFAULT now())");
  tx.commit();
}

// One round trip: the invoice from the OrderPlaced payload (parsed in PostgreSQL), returning
// the InvoiceCreated payload and the customer. A payload that is not a valid OrderPlaced
// fails the statement: the inbox retries the message, then moves it to txbox.inbox_dead.
constexpr const char* k_insert_invoice =
    "INSERT INTO billing.invoices (order_message_id, order_id, customer, customer_seq, "
    "  amount_cents) "
    "SELECT $1, (p->>'order_id')::bigint, p->>'customer', (p->>'customer_seq')::bigint, "
    "  (p->>'amount_cents')::bigint FROM (SELECT $2::jsonb AS p) o "
    "RETURNING json_build_object('invoice_id', invoice_id, 'order_id', order_id, "
    "  'customer', customer, 'customer_seq', customer_seq, 'amount_cents', amount_cents)::text, "
    "  customer";

int usage() {
  std::fprintf(stderr,
               "usage: billing [--config FILE] [--invoices-topic NAME] [KEY=VALUE ...]\n"
               "  KEY: database.url, consumer.name, consumer.topics, consumer.max_batch, "
               "kafka.<property>, ... (see billing.toml)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string invoices_topic = "invoices";
  std::map<std::string, std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--config" || arg == "--invoices-topic") && i + 1 < argc) {
      (arg == "--config" ? config_path : invoices_topic) = argv[++i];
    } else if (const auto eq = arg.find('='); eq != std::string_view::npos && eq > 0) {
      overrides[std::string(arg.substr(0, eq))] = std::string(arg.substr(eq + 1));
    } else {
      return usage();
    }
  }
  try {
    const txbox::ConsumerConfig cfg = txbox::load_consumer_config(config_path, overrides);
    create_tables(cfg.database_url);

    // Once, beside the Consumer, on the consumer's schema: the handler's messages go to the
    // outbox of the database and schema the inbox commits to.
    const txbox::Outbox outbox({.schema = cfg.schema, .source = "billing"});
    txbox::Consumer consumer(cfg, [&](pqxx::work& tx, const txbox::ReceivedMessage& m) {
      const std::string* type = m.header(txbox::headers::type);
      if (type == nullptr || *type != "OrderPlaced") return;  // other events: no invoice
#if PQXX_VERSION_MAJOR >= 7  // libpqxx 7 binds parameters with pqxx::params; 6.4 by exec_params
      const pqxx::row invoice = tx.exec(k_insert_invoice, pqxx::params{m.id, m.payload}).one_row();
#else
      const pqxx::row invoice = tx.exec_params1(k_insert_invoice, m.id, m.payload);
#endif
      // Same transaction: the message commits with the invoice and the inbox's record.
      // Its key is the customer, as upstream: the key lock is shared with the order service.
      outbox.enqueue(tx, {.topic = invoices_topic,
                          .key = invoice[1].as<std::string>(),
                          .payload = invoice[0].as<std::string>(),
                          .type = "InvoiceCreated"});
    });
    consumer.run();  // until SIGTERM or SIGINT; finishes the batch and leaves the group

    const txbox::ConsumerStats st = consumer.stats();
    std::printf(
        "billing %s: %llu processed, %llu duplicates skipped, %llu dead, %llu database "
        "retries\n",
        cfg.name.c_str(), static_cast<unsigned long long>(st.processed),
        static_cast<unsigned long long>(st.duplicates), static_cast<unsigned long long>(st.dead),
        static_cast<unsigned long long>(st.database_retries));
    return 0;
  } catch (const txbox::config_error& e) {
    std::fprintf(stderr, "billing: configuration: %s\n", e.what());
    return 3;
  } catch (const txbox::schema_error& e) {
    std::fprintf(stderr, "billing: schema: %s\n", e.what());
    return 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "billing: %s\n", e.what());
    return 1;
  }
}
