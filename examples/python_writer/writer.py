#!/usr/bin/env python3
"""An order service in Python: each order and its OrderPlaced message in one transaction.

The message goes through the SQL function txbox.enqueue (migrations/V4__sql_enqueue.sql),
which takes the key's advisory lock (the one the C++ writers take), checks the message and
adds the CloudEvents headers: the relay publishes it like any other, and the C++ projector
(examples/projector) applies it exactly once, in order per customer.

    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python writer.py --db "dbname=orders" --orders 100 --customers 10 --writers 4

The tables (shop.customers, shop.orders) are examples/order_service's; the payload is its
OrderPlaced JSON. The database user needs the txbox_writer role and rights on shop.
"""

import argparse
import json
import re
import sys
import threading

import psycopg
from psycopg import sql

# The customer's next sequence number (the upsert's row lock serialises writers of one customer
# until commit) and the order row that carries it.
PLACE_ORDER = """
WITH c AS (INSERT INTO shop.customers AS c (name, orders) VALUES (%(customer)s, 1)
           ON CONFLICT (name) DO UPDATE SET orders = c.orders + 1 RETURNING c.orders)
INSERT INTO shop.orders (customer, customer_seq, amount_cents)
SELECT %(customer)s, c.orders, %(amount)s FROM c RETURNING id, customer_seq, created_at
"""

CREATE_TABLES = """
SELECT pg_advisory_xact_lock(hashtext('order_service schema'));
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.customers (name text PRIMARY KEY, orders bigint NOT NULL);
CREATE TABLE IF NOT EXISTS shop.orders (id bigserial PRIMARY KEY,
  customer text NOT NULL, customer_seq bigint NOT NULL, amount_cents bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (customer, customer_seq));
"""


def enqueue_statement(schema):
    """SELECT <schema>.enqueue(...): the schema is an identifier, every value a parameter."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        sys.exit(f"writer: --schema {schema!r} is not a plain SQL identifier ([a-z0-9_], 1-63)")
    return sql.SQL(
        "SELECT {}.enqueue(%(topic)s, %(key)s, %(payload)s, %(headers)s::jsonb,"
        " 'OrderPlaced', 'python_writer')"
    ).format(sql.Identifier(schema))


def place_orders(opt, first, step, enqueue, errors):
    """Places orders first, first + step, ... (< opt.orders) on its own connection."""
    try:
        with psycopg.connect(opt.db) as conn:
            for n in range(first, opt.orders, step):
                customer = f"{opt.customer_prefix}{n % opt.customers}"
                amount = 100 + (n * 37) % 10_000
                with conn.transaction():  # the order and its message: both commit, or neither
                    order_id, seq, created = conn.execute(
                        PLACE_ORDER, {"customer": customer, "amount": amount}
                    ).fetchone()
                    payload = json.dumps({
                        "order_id": order_id, "customer": customer, "customer_seq": seq,
                        "amount_cents": amount, "placed_at": created.isoformat(),
                    })
                    conn.execute(enqueue, {
                        "topic": opt.topic, "key": customer,
                        "payload": payload.encode(), "headers": json.dumps([["writer", "python"]]),
                    })
    except psycopg.Error as e:  # e.g. a rejected message: SQLSTATE TX001.. and the rule
        errors.append(f"writer {first}: {e.sqlstate or ''} {e}".strip())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="libpq conninfo or URL")
    p.add_argument("--schema", default="txbox", help="txbox schema (default txbox)")
    p.add_argument("--topic", default="orders")
    p.add_argument("--orders", type=int, default=100)
    p.add_argument("--customers", type=int, default=10)
    p.add_argument("--writers", type=int, default=1, help="concurrent connections")
    p.add_argument("--customer-prefix", default="customer-")
    opt = p.parse_args()
    enqueue = enqueue_statement(opt.schema)
    with psycopg.connect(opt.db, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(CREATE_TABLES)
    errors = []
    threads = [threading.Thread(target=place_orders, args=(opt, w, opt.writers, enqueue, errors))
               for w in range(opt.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("writer: " + "; ".join(errors))
    print(f"{opt.orders} orders placed by {opt.writers} writers (python, txbox.enqueue)")


if __name__ == "__main__":
    main()
