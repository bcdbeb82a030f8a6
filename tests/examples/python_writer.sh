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
work=$(mktemp -d)
pids=()
schema=
sql() { psql "$TXBOX_TEST_PG" -qAtX -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $schema ]]; then sql -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "python writer check: $*" >&2
  local f
  for f in "$work"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
wait_for() {  # wait_for WHAT CMD...: until CMD succeeds, at most 90 s
  local what=$1 _
  shift
  for _ in $(seq 1 450); do "$@" && return 0; sleep 0.2; done
  fail "timed out waiting for $what"
}

python3 -m venv "$work/venv" >"$work/venv.log" 2>&1 || fail "python3 -m venv failed"
"$work/venv/bin/pip" install -q -r "$src/examples/python_writer/requirements.txt" \
  >"$work/pip.log" 2>&1 || fail "pip could not install psycopg from PyPI"

set -a
# shellcheck disable=SC1090
. "$TXBOX_TEST_ENV_FILE"
set +a
run=pywriter_$$_$RANDOM
schema=$run
topic=${run//_/-}
orders=120
bash "$src/migrations/render.sh" "$schema" | PGOPTIONS='-c client_min_messages=warning' sql >/dev/null

"$work/venv/bin/python" "$src/examples/python_writer/writer.py" --db "$TXBOX_TEST_PG" \
  --schema "$schema" --topic "$topic" --orders $orders --customers 8 --writers 4 \
  --customer-prefix "$run-c" >"$work/writer.log" 2>&1 || fail "writer.py failed"
grep -q "$orders orders placed" "$work/writer.log" || fail "writer.py did not place $orders orders"
# What the SQL function stored: the CloudEvents headers, then the caller's.
[[ $(sql -c "SELECT count(*) FROM $schema.outbox WHERE headers->0->>0 = 'ce_specversion'
             AND headers->1->>1 = 'python_writer' AND headers->3->>1 = 'OrderPlaced'
             AND headers->4->>0 = 'writer'") == "$orders" ]] \
  || fail "the outbox rows lack the CloudEvents headers: $(sql -c "SELECT headers FROM $schema.outbox LIMIT 1")"

"$relay_bin" --database-url "$TXBOX_TEST_PG" --schema "$schema" --name "$run" \
  --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" >"$work/relay.log" 2>&1 &
pids+=($!)
outbox_empty() { [[ $(sql -c "SELECT count(*) FROM $schema.outbox") == 0 ]]; }
wait_for "the relay to publish the outbox" outbox_empty

"$projector_bin" --config "$src/examples/projector/projector.toml" \
  database.url="$TXBOX_TEST_PG" database.schema="$schema" consumer.name="$topic" \
  consumer.topics="$topic" kafka.bootstrap.servers="$TXBOX_TEST_KAFKA" \
  >"$work/projector.log" 2>&1 &
projector=$!
pids+=("$projector")
applied() {
  [[ $(sql -c "SELECT count(*) FROM shop_view.applied WHERE customer LIKE '$run-c%'") -ge $orders ]]
}
wait_for "the projector to apply $orders orders" applied
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
