#!/usr/bin/env bash
# The key lock in consume-transform-produce (issue 30): examples/billing catches up on a backlog
# of OrderPlaced messages (its handler enqueues an InvoiceCreated keyed by the customer, so each
# batch holds its customers' key locks until it commits) while upstream writers enqueue for the
# same customers on another topic. One row per max_batch, and one without billing.
#   bench/billing_locks.sh [-s SECONDS] [-c CUSTOMERS] [-b BACKLOG] [-m LIST] [-k N] BILLING [RELAY]
#     -s        the writers' run per row (default 30 s)
#     -c        customers, the keys (default 100)
#     -b        OrderPlaced in the backlog (default 100000); each row reads them from the start
#               under a consumer name of its own: they must outlast the row
#     -m        billing's max_batch, one row each (default 500,50,1)
#     -k N      N billing consumers at once, each of its own name (each invoices every order;
#               two consume-transform-produce consumers of one topic, as billing and shipping)
#     BILLING   the billing program: examples/billing built against an installed txbox, or
#               txbox_example_billing of a build with tests (cmake --build B --target
#               txbox_example_billing: B/tests/txbox_example_billing); it gets this script's
#               environment
#     RELAY     txbox-relay (default build-bench/relay/txbox-relay), used once for the backlog
# Throwaway servers (durable PostgreSQL, deadlock_timeout 1 s, 6 partitions). The writers are
# pgbench (4 clients, 200 transactions/s in all): 90% enqueue one message (txbox.enqueue, topic
# payments, a random customer), 10% enqueue for two customers, taking both key locks first in
# hash order as Outbox::enqueue's batch form does. Per row: the writers' latency p50/p99 (from
# the transaction's start, pgbench's schedule lag left out), their deadlocks (40P01) per minute,
# billing's (txbox_inbox_database_retries_total), PostgreSQL's (pg_stat_database.deadlocks), and
# billing's invoices/s in the window. Measured for docs/inbox.md, "Consume, transform, produce".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=30 customers=100 backlog=100000 batches=500,50,1 consumers=1
while getopts s:c:b:m:k: opt; do
  case $opt in
    k) consumers=$OPTARG ;;
    s) seconds=$OPTARG ;;
    c) customers=$OPTARG ;;
    b) backlog=$OPTARG ;;
    m) batches=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
billing=${1:?usage: bench/billing_locks.sh [-s SECONDS] [-c CUSTOMERS] [-b BACKLOG] [-m LIST] [-k N] BILLING [RELAY]}
relay=${2:-build-bench/relay/txbox-relay}
[[ -x $billing && -x $relay ]] || { echo "no program at $billing or $relay" >&2; exit 2; }
say() { echo "[billing_locks $(date +%H:%M:%S)] $*" >&2; }

servers=$(mktemp -d /tmp/txbox-billing-locks.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; scripts/servers.sh stop "$servers" >/dev/null; rm -rf "$servers"' EXIT
export TXBOX_TEST_PG_OPTS="-c fsync=on -c synchronous_commit=on -c deadlock_timeout=1s"
export TXBOX_TEST_KAFKA_PARTITIONS=6
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers" all >/dev/null
set -a; . "$servers/endpoints.env"; set +a
sql() { psql "$TXBOX_TEST_PG" -qAtX -v ON_ERROR_STOP=1 "$@"; }

say "backlog: $backlog OrderPlaced over $customers customers, published by one relay"
sql -c "SELECT count(txbox.enqueue('orders', 'customer-' || i % $customers,
  convert_to(json_build_object('order_id', i, 'customer', 'customer-' || i % $customers,
    'customer_seq', i / $customers + 1, 'amount_cents', 100 + i % 1000)::text, 'UTF8'),
  type => 'OrderPlaced')) FROM generate_series(0, $backlog - 1) i" >/dev/null
"$relay" --database-url "$TXBOX_TEST_PG" --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" \
  --name backlog >"$servers/relay.log" 2>&1 &
pid=$!
until [[ $(sql -c "SELECT count(*) FROM txbox.outbox") == 0 ]]; do sleep 1; done
kill -TERM "$pid"; wait "$pid" || true

cat >"$servers/one.sql" <<'SQL'
\set a random(0, :customers - 1)
BEGIN;
SELECT txbox.enqueue('payments', 'customer-' || :a, convert_to('{}', 'UTF8'), type => 'PaymentReceived');
END;
SQL
cat >"$servers/two.sql" <<'SQL'
\set a random(0, :customers - 1)
\set b random(0, :customers - 1)
BEGIN;
SELECT count(*) FROM (SELECT pg_advisory_xact_lock(29816, h) FROM (SELECT DISTINCT hashtext(k) AS h
  FROM unnest(ARRAY['customer-' || :a, 'customer-' || :b]) AS keys(k) ORDER BY 1) hs) l;
SELECT txbox.enqueue('payments', 'customer-' || :a, convert_to('{}', 'UTF8'), type => 'PaymentReceived');
SELECT txbox.enqueue('payments', 'customer-' || :b, convert_to('{}', 'UTF8'), type => 'PaymentReceived');
END;
SQL

deadlocks() { sql -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"; }
invoiced() { sql -c "SELECT count(*) FROM txbox.inbox WHERE consumer LIKE '$1%'"; }

printf '| max_batch | writers p50 ms | p99 ms | writer deadlocks/min | billing deadlocks/min | database deadlocks/min | invoices/s |\n'
printf '|---|---|---|---|---|---|---|\n'
row() {  # MAX_BATCH (or "-": no billing)
  local m=$1 name="billing-$1-$RANDOM" n0=0 n1=0 retries=0 d0 d1 k f
  rm -f "$servers"/txlog.* "$servers"/billing-*.log
  pids=()
  if [[ $m != - ]]; then
    for ((k = 1; k <= consumers; k++)); do
      "$billing" --config examples/billing/billing.toml --invoices-topic invoices \
        database.url="$TXBOX_TEST_PG" consumer.name="$name-$k" consumer.max_batch="$m" \
        kafka.bootstrap.servers="$TXBOX_TEST_KAFKA" >"$servers/billing-$k.log" 2>&1 &
      pids+=($!)
    done
    # every consumer assigned and catching up
    until (($(sql -c "SELECT count(DISTINCT consumer) FROM txbox.inbox WHERE consumer LIKE '$name-%'") == consumers)); do
      sleep 0.2
    done
    n0=$(invoiced "$name-")
  fi
  d0=$(deadlocks)
  pgbench -n -c 4 -j 2 -T "$seconds" -R 200 -D customers="$customers" --failures-detailed -l \
    --log-prefix="$servers/txlog" -f "$servers/one.sql@9" -f "$servers/two.sql@1" \
    "$TXBOX_TEST_PG" >"$servers/pgbench.log" 2>&1 || { cat "$servers/pgbench.log" >&2; exit 1; }
  if [[ $m != - ]]; then
    n1=$(invoiced "$name-")
    kill -TERM "${pids[@]}"
    wait "${pids[@]}" || true
    for f in "$servers"/billing-*.log; do
      retries=$((retries + $(sed -nE 's/.* ([0-9]+) database retries$/\1/p' "$f")))
    done
    ((n1 - n0 < consumers * backlog / 2)) || say "max_batch $m: billing may have finished the backlog (use -b)"
  fi
  d1=$(deadlocks)  # after every session ended: each has flushed its statistics
  # pgbench's log: client tx time_us script epoch epoch_us lag_us; time is "deadlock" on failure.
  local dl
  dl=$(cat "$servers"/txlog.* | awk '$3 == "deadlock"' | wc -l)
  cat "$servers"/txlog.* | awk '$3 != "deadlock" {print ($3 - $7) / 1000}' | sort -g >"$servers/ms"
  awk -v m="$m" -v s="$seconds" -v dl="$dl" -v d="$((d1 - d0))" -v r="${retries:-0}" \
    -v inv="$(((n1 - n0) / seconds))" '{t[NR] = $1}
    END {
      printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", m, t[int(NR * 0.5) + 1],
        t[int(NR * 0.99) + 1], dl * 60 / s, r * 60 / s, d * 60 / s, m == "-" ? "-" : inv
    }' "$servers/ms"
  sql -c "TRUNCATE txbox.outbox" >/dev/null
}
row -
IFS=, read -ra list <<<"$batches"
for m in "${list[@]}"; do row "$m"; done
