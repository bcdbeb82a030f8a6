#!/usr/bin/env bash
# examples/billing end to end (consume, transform, produce): examples/order_service places
# orders (4 writers over 12 customers) while txbox-relay publishes them and billing turns each
# OrderPlaced into an invoice row and an InvoiceCreated message in the inbox's transaction;
# the same relay publishes the invoices. billing is killed with SIGKILL mid-way and restarted
# as a role with only the documented grants (txbox_consumer, txbox_writer, its own table).
# Checks: every order of the run has exactly one invoice row; the invoices topic holds one
# distinct InvoiceCreated (ce_id) per invoice row, in customer_seq order per customer.
#   tests/examples/billing.sh SOURCE_DIR RELAY ORDER_SERVICE BILLING   (TXBOX_TEST_ENV_FILE)
set -euo pipefail
src=$1
relay_bin=$2
order_service_bin=$3
billing_bin=$4
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
role=
drop_role() {
  [[ -n $role ]] || return 0
  sql -c "REVOKE ALL ON billing.invoices FROM $role; REVOKE ALL ON SCHEMA billing FROM $role;
          DROP ROLE IF EXISTS $role" >/dev/null 2>&1
}
support_init "billing check" drop_role

load_test_env
run=billing_$$_$RANDOM
schema=$run
orders_topic=${run//_/-}-orders
invoices_topic=${run//_/-}-invoices
consumer=${run//_/-}
orders=3000
create_schema "$src/migrations/render.sh"

# start_billing CONNINFO LOG: billing on $schema, in the background; $billing its pid.
start_billing() {
  "$billing_bin" --config "$src/examples/billing/billing.toml" --invoices-topic "$invoices_topic" \
    database.url="$1" database.schema="$schema" consumer.name="$consumer" \
    consumer.topics="$orders_topic" kafka.bootstrap.servers="$TXBOX_TEST_KAFKA" >"$work/$2" 2>&1 &
  billing=$!
  pids+=("$billing")
}
# billed: this run's invoice rows (the inbox row of the OrderPlaced committed with each).
billed() {
  sql -c "SELECT count(*) FROM billing.invoices b JOIN $schema.inbox i
          ON i.message_id = b.order_message_id AND i.consumer = '$consumer'"
}
billed_at_least() { (($(billed) >= $1)); }

# The orders topic exists before billing subscribes: the first order, published.
"$order_service_bin" --db "$TXBOX_TEST_PG" --schema "$schema" --topic "$orders_topic" \
  --orders 1 >"$work/order_service-first.log" 2>&1 || fail "order_service failed"
start_relay "$relay_bin" "$run"
wait_for "the relay to publish the first order" 60 outbox_empty

start_billing "$TXBOX_TEST_PG" billing-1.log
"$order_service_bin" --db "$TXBOX_TEST_PG" --schema "$schema" --topic "$orders_topic" \
  --orders $((orders - 1)) --customers 12 --writers 4 >"$work/order_service.log" 2>&1 &
order_service=$!
pids+=("$order_service")
wait_for "billing to invoice 500 orders" 120 billed_at_least 500
kill -KILL "$billing"
wait "$billing" 2>/dev/null || true
pids=("$relay" "$order_service")
at_kill=$(billed)
placing=no
kill -0 "$order_service" 2>/dev/null && placing=yes

# The restart runs as a role with only the documented grants.
role=$run
sql -c "CREATE ROLE $role LOGIN; GRANT txbox_consumer, txbox_writer TO $role;
        GRANT USAGE ON SCHEMA billing TO $role; GRANT INSERT, SELECT ON billing.invoices TO $role" \
  >/dev/null
role_db=${TXBOX_TEST_PG/user=txbox_owner/user=$role}
[[ $role_db != "$TXBOX_TEST_PG" ]] || fail "no user=txbox_owner in the test conninfo"
start_billing "$role_db" billing-2.log
wait "$order_service" || fail "order_service failed"
grep -q "$((orders - 1)) orders placed" "$work/order_service.log" || fail "order_service did not place its orders"
wait_for "billing to invoice $orders orders" 120 billed_at_least $orders
wait_for "the relay to publish the invoices" 60 outbox_empty
kill -TERM "$billing"
wait "$billing" || fail "billing exited with status $? on SIGTERM"
grep -q ", 0 dead" "$work/billing-2.log" || fail "billing dead-lettered messages"

# What Kafka holds: every OrderPlaced and InvoiceCreated of the run (duplicates included).
kcat_dump() {
  kcat -b "$TXBOX_TEST_KAFKA" -C -t "$1" -e -q -f '%p\t%o\t%h\t%s\n' >"$work/$1.tsv" \
    || fail "kcat could not read $1"
}
kcat_dump "$orders_topic"
kcat_dump "$invoices_topic"
sql >/dev/null <<SQL
CREATE TABLE $schema.log_orders (p int, o bigint, h text, body jsonb);
CREATE TABLE $schema.log_invoices (p int, o bigint, h text, body jsonb);
\copy $schema.log_orders FROM '$work/$orders_topic.tsv'
\copy $schema.log_invoices FROM '$work/$invoices_topic.tsv'
SQL

read -r placed <<<"$(sql -c "SELECT count(DISTINCT (body->>'order_id')) FROM $schema.log_orders")"
[[ $placed == "$orders" ]] || fail "the orders topic holds $placed orders, want $orders"
# Exactly once into the database: one invoice row per order.
read -r rows distinct missing < <(sql -F ' ' -c "
  WITH o AS (SELECT DISTINCT (body->>'order_id')::bigint AS order_id FROM $schema.log_orders)
  SELECT (SELECT count(*) FROM billing.invoices WHERE order_id IN (SELECT order_id FROM o)),
         (SELECT count(DISTINCT order_id) FROM billing.invoices
          WHERE order_id IN (SELECT order_id FROM o)),
         (SELECT count(*) FROM o WHERE order_id NOT IN (SELECT order_id FROM billing.invoices))")
[[ $rows == "$orders" && $distinct == "$orders" && $missing == 0 ]] \
  || fail "$rows invoice rows for $distinct orders, $missing orders without one (want $orders)"
# Exactly once into the outbox, hence the log: one InvoiceCreated per invoice row, each
# carrying that row's invoice and order.
read -r ids matched < <(sql -F ' ' -c "
  SELECT count(DISTINCT substring(l.h FROM 'ce_id=([^,]*)')),
         count(DISTINCT b.invoice_id)
  FROM $schema.log_invoices l LEFT JOIN billing.invoices b
    ON b.invoice_id = (l.body->>'invoice_id')::bigint AND b.order_id = (l.body->>'order_id')::bigint")
[[ $ids == "$orders" && $matched == "$orders" ]] \
  || fail "the invoices topic holds $ids distinct InvoiceCreated matching $matched invoice rows (want $orders)"
# Per customer, the invoices are in the order the customer's orders were placed (first copy of
# each message, in log order).
out_of_order=$(sql -c "
  WITH f AS (SELECT DISTINCT ON (substring(h FROM 'ce_id=([^,]*)')) p, o, body
             FROM $schema.log_invoices ORDER BY substring(h FROM 'ce_id=([^,]*)'), p, o),
  s AS (SELECT (body->>'customer_seq')::bigint AS seq,
               lag((body->>'customer_seq')::bigint) OVER (PARTITION BY body->>'customer' ORDER BY p, o) AS prev
        FROM f)
  SELECT count(*) FROM s WHERE seq <= prev")
[[ $out_of_order == 0 ]] || fail "$out_of_order InvoiceCreated out of customer order"
dead=$(sql -c "SELECT count(*) FROM $schema.inbox_dead")
[[ $dead == 0 ]] || fail "$dead messages in inbox_dead"
echo "billing check: $orders orders, $orders invoice rows and $orders InvoiceCreated (distinct" \
  "ce_id) in order per customer; billing killed with SIGKILL at $at_kill invoices (orders still" \
  "being placed: $placing) and restarted as a role with txbox_consumer, txbox_writer"
