// order_service: places orders, each with its OrderPlaced message, in one transaction.
//   order_service --db "host=... dbname=..." [--orders N] [--customers N] [--writers N]
//                 [--schema txbox] [--topic orders]
//
// Each order gets its customer's next sequence number (customer_seq: 1, 2, 3, ... per
// customer), taken from a row lock on the customer that is held until commit, so per
// customer the sequence order is the commit order. The message's key is the customer, so a
// consumer can check that it sees every customer's orders exactly once and in that order.
#include <txbox/outbox.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string db;
  std::string schema = "txbox";
  std::string topic = "orders";
  long orders = 1000;
  long customers = 100;
  long writers = 1;
};

// One statement: the customer's next sequence number (the upsert's row lock serialises
// writers of one customer until commit) and the order row that carries it.
constexpr const char* k_place_order =
    "WITH c AS (INSERT INTO shop.customers AS c (name, orders) VALUES ($1, 1) "
    "           ON CONFLICT (name) DO UPDATE SET orders = c.orders + 1 RETURNING c.orders) "
    "INSERT INTO shop.orders (customer, customer_seq, amount_cents) "
    "SELECT $1, c.orders, $2 FROM c RETURNING id, customer_seq, created_at";

void create_tables(pqxx::connection& conn) {
  pqxx::work tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('order_service schema'))");
  tx.exec(
      "CREATE SCHEMA IF NOT EXISTS shop; "
      "CREATE TABLE IF NOT EXISTS shop.customers (name text PRIMARY KEY, "
      "  orders bigint NOT NULL); "
      "CREATE TABLE IF NOT EXISTS shop.orders (id bigserial PRIMARY KEY, "
      "  customer text NOT NULL, customer_seq bigint NOT NULL, amount_cents bigint NOT NULL, "
      "  created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (customer, customer_seq))");
  tx.commit();
}

// Places orders first, first + step, ... (< opt.orders) on its own connection.
void writer(const Options& opt, long first, long step, std::atomic<long>& placed,
            std::atomic<bool>& failed) {
  pqxx::connection conn(opt.db);
  const txbox::Outbox outbox({.schema = opt.schema, .source = "order_service"});
  const long tenth = opt.orders >= 1000 ? opt.orders / 10 : 0;  // progress for long runs
  for (long n = first; n < opt.orders && !failed; n += step) {
    const std::string customer = "customer-" + std::to_string(n % opt.customers);
    const long amount = 100 + (n * 37) % 10'000;
    pqxx::work tx(conn);
#if PQXX_VERSION_MAJOR >= 7  // libpqxx 7 binds parameters with pqxx::params; 6.4 by exec_params
    const pqxx::row row = tx.exec(k_place_order, pqxx::params{customer, amount}).one_row();
#else
    const pqxx::row row = tx.exec_params1(k_place_order, customer, amount);
#endif
    const std::string payload = "{\"order_id\":" + row[0].as<std::string>() + ",\"customer\":\"" +
                                customer + "\",\"customer_seq\":" + row[1].as<std::string>() +
                                ",\"amount_cents\":" + std::to_string(amount) +
                                ",\"placed_at\":\"" + row[2].as<std::string>() + "\"}";
    // The message is part of the order's transaction: both commit, or neither.
    outbox.enqueue(tx, {.topic = opt.topic,
                        .key = customer,  // per-customer order is kept
                        .payload = payload,
                        .type = "OrderPlaced"});
    tx.commit();
    const long done = ++placed;
    if (tenth > 0 && done % tenth == 0) {
      std::fprintf(stderr, "  ... %ld/%ld orders\n", done, opt.orders);
    }
  }
}

bool parse(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) return false;
    const char* value = argv[i + 1];
    if (flag == "--db") {
      opt.db = value;
    } else if (flag == "--schema") {
      opt.schema = value;
    } else if (flag == "--topic") {
      opt.topic = value;
    } else if (flag == "--orders") {
      opt.orders = std::atol(value);
    } else if (flag == "--customers") {
      opt.customers = std::atol(value);
    } else if (flag == "--writers") {
      opt.writers = std::atol(value);
    } else {
      return false;
    }
  }
  return !opt.db.empty() && opt.orders > 0 && opt.customers > 0 && opt.writers > 0 &&
         opt.writers <= 64;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) {
    std::fprintf(stderr,
                 "usage: order_service --db CONNINFO [--orders N] [--customers N] "
                 "[--writers 1..64] [--schema txbox] [--topic orders]\n");
    return 2;
  }
  try {
    pqxx::connection conn(opt.db);
    create_tables(conn);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "order_service: %s\n", e.what());
    return 1;
  }
  std::atomic<long> placed{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (long w = 0; w < opt.writers; ++w) {
      threads.emplace_back([&, w] {
        try {
          writer(opt, w, opt.writers, placed, failed);
        } catch (const std::exception& e) {
          failed = true;
          const std::lock_guard lock(error_mutex);
          if (error.empty()) error = e.what();
        }
      });
    }
  }  // joins the writers
  if (failed) {
    std::fprintf(stderr, "order_service: %s (%ld orders placed before)\n", error.c_str(),
                 placed.load());
    return 1;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%ld orders placed in %.2f s (%.0f orders/s, %ld writers), each with its message in the "
      "outbox\n",
      opt.orders, secs, static_cast<double>(opt.orders) / secs, opt.writers);
  return 0;
}
