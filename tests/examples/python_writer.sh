#!/usr/bin/env bash
# examples/python_writer end to end: psycopg (from PyPI, in a venv made here) writes orders and
# their messages in one transaction each through txbox.enqueue, 4 writers over 8 customers;
# txbox-relay publishes them; the C++ projector (examples/projector) applies them. Checks
# that every order is applied exactly once and, per customer, in customer_seq order.
#   tests/examples/python_writer.sh SOURCE_DIR RELAY PROJECTOR   (TXBOX_TEST_ENV_FILE: servers)
set -euo pipefail
src=$1
relay_bin=$2
projector_bin=$3
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
support_init "python writer check"

python3 -m venv "$work/venv" >"$work/venv.log" 2>&1 || fail "python3 -m venv failed"
"$work/venv/bin/pip" install -q -r "$src/examples/python_writer/requirements.txt" \
  >"$work/pip.log" 2>&1 || fail "pip could not install psycopg from PyPI"

load_test_env
run=pywriter_$$_$RANDOM
schema=$run
topic=${run//_/-}
orders=120
create_schema "$src/migrations/render.sh"

"$work/venv/bin/python" "$src/examples/python_writer/writer.py" --db "$TXBOX_TEST_PG" \
  --schema "$schema" --topic "$topic" --orders $orders --customers 8 --writers 4 \
  --customer-prefix "$run-c" >"$work/writer.log" 2>&1 || fail "writer.py failed"
grep -q "$orders orders placed" "$work/writer.log" || fail "writer.py did not place $orders orders"
# What the SQL function stored: the CloudEvents headers, then the caller's.
[[ $(sql -c "SELECT count(*) FROM $schema.outbox WHERE headers->0->>0 = 'ce_specversion'
             AND headers->1->>1 = 'python_writer' AND headers->3->>1 = 'OrderPlaced'
             AND headers->4->>0 = 'writer'") == "$orders" ]] \
  || fail "the outbox rows lack the CloudEvents headers: $(sql -c "SELECT headers FROM $schema.outbox LIMIT 1")"

start_relay "$relay_bin" "$run"
wait_for "the relay to publish the outbox" 90 outbox_empty

start_projector "$projector_bin" "$src" "$topic"
applied() {
  [[ $(sql -c "SELECT count(*) FROM shop_view.applied WHERE customer LIKE '$run-c%'") -ge $orders ]]
}
wait_for "the projector to apply $orders orders" 90 applied
kill -TERM "$projector"
wait "$projector" || fail "the projector exited with status $? on SIGTERM"

# Exactly once: every order of this run applied once, by its message.
read -r runs distinct matched < <(sql -F ' ' -c "
  SELECT count(*), count(DISTINCT a.message_id), count(*) FILTER (WHERE o.id IS NOT NULL)
  FROM shop_view.applied a LEFT JOIN shop.orders o ON o.id = a.order_id
   AND o.customer = a.customer AND o.customer_seq = a.customer_seq
  WHERE a.customer LIKE '$run-c%'")
[[ $runs == "$orders" && $distinct == "$orders" && $matched == "$orders" ]] \
  || fail "applied $runs times for $distinct messages, $matched matching an order (want $orders)"
# In order per customer: in the order applied, each customer's sequence is 1, 2, 3, ...
out_of_order=$(sql -c "
  SELECT count(*) FROM (SELECT customer_seq, row_number() OVER (PARTITION BY customer ORDER BY n) AS r
                        FROM shop_view.applied WHERE customer LIKE '$run-c%') s
  WHERE customer_seq <> r")
[[ $out_of_order == 0 ]] || fail "$out_of_order messages applied out of customer order"
echo "python writer check: $orders orders written by psycopg through $schema.enqueue, applied" \
  "once each and in order per customer by the C++ projector"
