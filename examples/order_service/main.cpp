// order_service: places orders, each with its OrderPlaced message, in one transaction.
//   order_service --db "host=... dbname=..." [--orders N] [--customers N]
#include <txbox/outbox.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
  std::string db;
  long orders = 1000;
  long customers = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--db") {
      db = argv[i + 1];
    } else if (flag == "--orders") {
      orders = std::atol(argv[i + 1]);
    } else if (flag == "--customers") {
      customers = std::atol(argv[i + 1]);
    }
  }
  if (db.empty() || orders <= 0 || customers <= 0) {
    std::fprintf(stderr, "usage: order_service --db CONNINFO [--orders N] [--customers N]\n");
    return 2;
  }
  try {
    pqxx::connection conn(db);
    pqxx::nontransaction(conn).exec(
        "CREATE SCHEMA IF NOT EXISTS shop; "
        "CREATE TABLE IF NOT EXISTS shop.orders (id bigserial PRIMARY KEY, customer text NOT NULL, "
        "amount_cents bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())");
    const txbox::Outbox outbox;  // schema "txbox"
    const auto start = std::chrono::steady_clock::now();
    for (long n = 1; n <= orders; ++n) {
      const std::string customer = "customer-" + std::to_string(n % customers);
      const long amount = 100 + (n * 37) % 10'000;
      pqxx::work tx(conn);
      const auto id = tx.exec_params1(
                            "INSERT INTO shop.orders (customer, amount_cents) VALUES "
                            "($1, $2) RETURNING id",
                            customer, amount)[0]
                          .as<long>();
      // The message is part of the order's transaction: both commit, or neither.
      outbox.enqueue(
          tx, {.topic = "orders",
               .key = customer,  // per-customer order is kept
               .payload = "{\"order_id\":" + std::to_string(id) + ",\"customer\":\"" + customer +
                          "\",\"amount_cents\":" + std::to_string(amount) + "}",
               .type = "OrderPlaced"});
      tx.commit();
      if (orders >= 10 && n % (orders / 10) == 0) {
        std::fprintf(stderr, "  ... %ld/%ld orders\n", n, orders);
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%ld orders placed in %.2f s (%.0f orders/s), each with its message in the outbox\n",
        orders, secs, static_cast<double>(orders) / secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "order_service: %s\n", e.what());
    return 1;
  }
}
