// projector: consumes the order service's OrderPlaced messages through txbox::inbox into a
// read model, exactly once, until SIGTERM or SIGINT.
//   projector [--config FILE] [--metrics-file PATH] [KEY=VALUE ...]
//
// Settings: the TOML file (see projector.toml), then TXBOX_* environment variables
// (TXBOX_DATABASE_URL, TXBOX_KAFKA_BOOTSTRAP_SERVERS, ...), then KEY=VALUE arguments with
// the same keys (database.url=..., consumer.name=..., kafka.session.timeout.ms=...).
// --metrics-file writes Consumer::metrics_text() there every second (a real service serves
// it on its /metrics endpoint instead).
//
// The read model is shop_view.customer_orders: per customer, the number and total of its
// orders and the last customer_seq applied. Next to it, shop_view.applied logs every handler
// run, without any unique constraint, so that a message applied twice, skipped or applied
// out of order would show there instead of being hidden by a key. The handler's writes
// commit in the inbox's transaction, with the message's id and the partition's offset.
#include <txbox/inbox.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <thread>

namespace {

void create_read_model(const std::string& database_url) {
  pqxx::connection conn(database_url);
  pqxx::work tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('projector read model'))");
  tx.exec(
      "CREATE SCHEMA IF NOT EXISTS shop_view; "
      "CREATE TABLE IF NOT EXISTS shop_view.customer_orders ("
      "  customer text PRIMARY KEY, orders bigint NOT NULL, amount_cents bigint NOT NULL, "
      "  last_seq bigint NOT NULL, updated_at timestamptz NOT NULL); "
      // No unique constraint on purpose: this log proves exactly-once and per-key order
      // rather than enforcing them.
      "CREATE TABLE IF NOT EXISTS shop_view.applied ("
      "  n bigint GENERATED ALWAYS AS IDENTITY, message_id text NOT NULL, "
      "  customer text NOT NULL, customer_seq bigint NOT NULL, order_id bigint NOT NULL, "
      "  amount_cents bigint NOT NULL, placed_at timestamptz NOT NULL, "
      "  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
      "  kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL)");
  tx.commit();
}

// One round trip: parse the JSON payload in PostgreSQL, log the run, update the read model.
// A payload that is not a valid OrderPlaced fails the statement: the inbox retries the
// message, then moves it to txbox.inbox_dead.
constexpr const char* k_apply =
    "WITH o AS (SELECT $2::jsonb AS p), "
    "log AS (INSERT INTO shop_view.applied (message_id, customer, customer_seq, order_id, "
    "          amount_cents, placed_at, kafka_partition, kafka_offset) "
    "        SELECT $1, p->>'customer', (p->>'customer_seq')::bigint, "
    "          (p->>'order_id')::bigint, (p->>'amount_cents')::bigint, "
    "          (p->>'placed_at')::timestamptz, $3, $4 FROM o) "
    "INSERT INTO shop_view.customer_orders AS c (customer, orders, amount_cents, last_seq, "
    "  updated_at) "
    "SELECT p->>'customer', 1, (p->>'amount_cents')::bigint, (p->>'customer_seq')::bigint, "
    "  clock_timestamp() FROM o "
    "ON CONFLICT (customer) DO UPDATE SET orders = c.orders + 1, "
    "  amount_cents = c.amount_cents + EXCLUDED.amount_cents, last_seq = EXCLUDED.last_seq, "
    "  updated_at = EXCLUDED.updated_at";

void apply_order(pqxx::work& tx, const txbox::ReceivedMessage& m) {
  const std::string* type = m.header(txbox::headers::type);
  if (type == nullptr || *type != "OrderPlaced") return;  // other events: nothing to project
#if PQXX_VERSION_MAJOR >= 7  // libpqxx 7 binds parameters with pqxx::params; 6.4 by exec_params
  tx.exec(k_apply, pqxx::params{m.id, m.payload, m.partition, m.offset});
#else
  tx.exec_params(k_apply, m.id, m.payload, m.partition, m.offset);
#endif
}

// Writes `text` to `path` atomically (a reader never sees half a file).
void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) return;
  }
  std::rename(tmp.c_str(), path.c_str());
}

int usage() {
  std::fprintf(stderr,
               "usage: projector [--config FILE] [--metrics-file PATH] [KEY=VALUE ...]\n"
               "  KEY: database.url, consumer.name, consumer.topics, kafka.<property>, ... "
               "(see projector.toml)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string metrics_path;
  std::map<std::string, std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--config" || arg == "--metrics-file") && i + 1 < argc) {
      (arg == "--config" ? config_path : metrics_path) = argv[++i];
    } else if (const auto eq = arg.find('='); eq != std::string_view::npos && eq > 0) {
      overrides[std::string(arg.substr(0, eq))] = std::string(arg.substr(eq + 1));
    } else {
      return usage();
    }
  }
  try {
    const txbox::ConsumerConfig cfg = txbox::load_consumer_config(config_path, overrides);
    create_read_model(cfg.database_url);
    txbox::Consumer consumer(cfg, apply_order);

    std::jthread reporter;
    if (!metrics_path.empty()) {
      reporter = std::jthread([&](std::stop_token stop) {
        while (!stop.stop_requested()) {
          write_file(metrics_path, consumer.metrics_text());
          for (int i = 0; i < 10 && !stop.stop_requested(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
        }
      });
    }
    consumer.run();  // until SIGTERM or SIGINT; finishes the batch and leaves the group
    if (reporter.joinable()) {
      reporter.request_stop();
      reporter.join();
      write_file(metrics_path, consumer.metrics_text());
    }
    const txbox::ConsumerStats st = consumer.stats();
    std::printf("projector %s: %llu processed, %llu duplicates skipped, %llu dead\n",
                cfg.name.c_str(), static_cast<unsigned long long>(st.processed),
                static_cast<unsigned long long>(st.duplicates),
                static_cast<unsigned long long>(st.dead));
    return 0;
  } catch (const txbox::config_error& e) {
    std::fprintf(stderr, "projector: configuration: %s\n", e.what());
    return 3;
  } catch (const txbox::schema_error& e) {
    std::fprintf(stderr, "projector: schema: %s\n", e.what());
    return 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "projector: %s\n", e.what());
    return 1;
  }
}
