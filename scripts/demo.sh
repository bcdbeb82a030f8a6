#!/usr/bin/env bash
# The txbox demo, end to end on throwaway local servers:
#   1. installs dependencies, builds and installs txbox into build-demo/prefix, and builds
#      examples/order_service and examples/projector against it (find_package(txbox));
#   2. starts PostgreSQL 15 and Apache Kafka on free loopback ports, applies the migrations;
#   3. starts two txbox-relay daemons and the projector (txbox::inbox into a read model);
#   4. places N orders from several writers, each order with its OrderPlaced message in one
#      transaction, kills one relay and the projector with SIGKILL partway and restarts them;
#   5. checks the read model against the orders and prints a summary.
# What the summary counts, all from PostgreSQL:
#   - lost: orders with no row in the projector's log shop_view.applied (which has no unique
#     constraint, so that a message applied twice would show as a second row);
#   - out of order: log rows whose customer_seq is lower than one applied before for the same
#     customer (the message key);
#   - duplicates absorbed: Kafka records consumed (the inbox's next offsets) minus distinct
#     message ids in txbox.inbox;
#   - latency: from the order's transaction (its created_at) to the handler's write in the
#     projector's transaction (clock_timestamp()); the batch commits right after.
# Every process and server it started is stopped at the end; logs stay in build-demo/demo-logs.
# Exits 1 if anything was lost, applied twice, reordered or dead-lettered.
#   scripts/demo.sh [N]        (default N = 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
orders=${1:-10000}
[[ $orders =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/demo.sh [ORDERS]" >&2; exit 2; }
writers=4                 # concurrent order_service connections
customers=$((orders < 100 ? orders : 100))   # the ordering keys
partitions=6              # of the orders topic
lease_ttl_ms=5000         # a killed relay's shards move after this (default 10 s)
session_timeout_ms=3000   # a killed projector's partitions move after this
consumer=demo-projector
t_start=$(date +%s.%N)

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
int() {  # int N: 12,345
  local n=$1 out=
  while ((${#n} > 3)); do out=,${n: -3}$out n=${n:0:${#n}-3}; done
  printf '%s%s' "$n" "$out"
}
older() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a > s) }'; }  # older T SECS

step "1/5 dependencies, build, install; the examples built against the installed package"
scripts/install-deps.sh
logs=$root/build-demo/demo-logs
rm -rf "$logs"
mkdir -p "$logs"
quietly() {  # quietly LOG CMD...: runs CMD into LOG; prints LOG's last line, or all of it on failure
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }
  tail -1 "$log"
}
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DTXBOX_BUILD_TESTS=OFF >/dev/null
quietly "$logs/build.log" \
  cmake --build build-demo -j 2 --target txbox-relay txboxctl txbox_inbox txbox_outbox
cmake --install build-demo --prefix build-demo/prefix >/dev/null
prefix=$root/build-demo/prefix
for example in order_service projector; do
  cmake -S "examples/$example" -B "build-demo/$example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  quietly "$logs/build-$example.log" cmake --build "build-demo/$example"
done
echo "installed into build-demo/prefix; examples in build-demo/{order_service,projector}"

servers=$(mktemp -d /tmp/txbox-demo.XXXXXX)
declare -A pids=()        # name -> pid of every process the demo started and has not reaped
started=()                # every pid the demo started, to check at the end that none is left

stop_proc() {  # stop_proc NAME: SIGTERM, up to 10 s to finish, then SIGKILL; reaps it
  local name=$1 pid
  pid=${pids[$name]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "pids[$name]"
}
cleanup() {
  local name pid f left=()
  for name in "${!pids[@]}"; do stop_proc "$name"; done
  for f in pg.pid kafka.pid; do
    [[ -f $servers/$f ]] && started+=("$(cat "$servers/$f")")
  done
  scripts/servers.sh stop "$servers" 2>/dev/null || true
  rm -rf "$servers"
  for pid in "${started[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
  if ((${#left[@]})); then
    echo "demo: processes still running: ${left[*]}" >&2
  else
    echo "stopped all ${#started[@]} processes the demo started (servers included); none is left"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "2/5 throwaway PostgreSQL 15 + Kafka; migrations"
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA TXBOX_TEST_KAFKA_PARTITIONS=$partitions \
  scripts/servers.sh start "$servers" 2>&1 | grep -E 'starting|ready|error' || true
[[ -f $servers/endpoints.env ]] || { echo "the servers did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$servers/endpoints.env"
db=$TXBOX_TEST_PG
kafka=$TXBOX_TEST_KAFKA
sql() { psql "$db" -qAtX -v ON_ERROR_STOP=1 "$@"; }
for f in "$prefix"/share/txbox/migrations/V*__*.sql; do
  PGOPTIONS='-c client_min_messages=warning' sql -f "$f" >/dev/null
done
echo "applied $(cd "$prefix/share/txbox/migrations" && echo V*__*.sql) (idempotent);" \
  "schema txbox at version $(sql -c 'SELECT max(version) FROM txbox.schema_version')"

step "3/5 two relays and the projector"
start_projector() {
  TXBOX_DATABASE_URL=$db TXBOX_KAFKA_BOOTSTRAP_SERVERS=$kafka \
    build-demo/projector/projector --config examples/projector/projector.toml \
    --metrics-file "$logs/projector.metrics" consumer.name=$consumer \
    kafka.session.timeout.ms=$session_timeout_ms >>"$logs/projector.log" 2>&1 &
  pids[projector]=$!
  started+=("$!")
}
start_relay() {  # start_relay NAME
  TXBOX_RELAY_LEASE_TTL_MS=$lease_ttl_ms "$prefix/bin/txbox-relay" --database-url "$db" \
    --kafka-bootstrap-servers "$kafka" --name "$1" >>"$logs/$1.log" 2>&1 &
  pids[$1]=$!
  started+=("$!")
}
metric() {  # metric NAME: the projector's last reported value of a metric (0 if none)
  awk -v n="$1" '$1 ~ "^"n"({|$)" { s += $2 } END { print s + 0 }' "$logs/projector.metrics" \
    2>/dev/null || echo 0
}
alive() {  # alive NAME...: fails with the process's log when one has exited
  local name
  for name in "$@"; do
    if ! kill -0 "${pids[$name]}" 2>/dev/null; then
      echo "$name exited unexpectedly; its log ($logs/$name.log) ends with:" >&2
      tail -20 "$logs/$name.log" >&2
      exit 1
    fi
  done
}
wait_log() {  # wait_log NAME PATTERN: until NAME's log has a line matching PATTERN (60 s)
  local t
  t=$(now)
  until grep -q -- "$2" "$logs/$1.log" 2>/dev/null; do
    alive "$1"
    older "$t" 60 && { echo "$1: no '$2' within 60 s; see $logs/$1.log" >&2; exit 1; }
    sleep 0.2
  done
}
t=$(now)
start_relay relay-a
start_relay relay-b
wait_log relay-a "shards owned"
wait_log relay-b "shards owned"
echo "relays: relay-a and relay-b own their shards (acks=all, idempotent producer," \
  "lease ttl $lease_ttl_ms ms; $(since "$t") s)"
# The broker creates the topic on its first message. A DemoStarted message, written with plain
# SQL as any writer may, creates it before the projector subscribes (the projector skips it).
sql <<'SQL'
INSERT INTO txbox.outbox (message_id, topic, payload, headers)
VALUES (gen_random_uuid(), 'orders', convert_to('{}', 'UTF8'),
        '[["ce_specversion", "1.0"], ["ce_source", "demo.sh"], ["ce_type", "DemoStarted"]]');
SQL
t=$(now)
until [[ $(sql -c 'SELECT count(*) FROM txbox.outbox') == 0 ]]; do
  alive relay-a relay-b
  older "$t" 60 && { echo "the relays published nothing within 60 s; see $logs" >&2; exit 1; }
  sleep 0.1
done
t=$(now)
start_projector
wait_log projector "assigned"
echo "projector: consumer '$consumer', assigned the $partitions partitions of topic orders" \
  "($(since "$t") s)"

step "4/5 placing $(int "$orders") orders ($writers writers, $customers customers);" \
  "SIGKILL relay-a and the projector partway"
build-demo/order_service/order_service --db "$db" --orders "$orders" --customers "$customers" \
  --writers "$writers" >"$logs/order_service.log" 2>&1 &
pids[order_service]=$!
started+=("$!")
t0=$(now)
placing=1 killed=0 restarted=0 kill_at=0 kill_t=0 last_applied=-1 stall_t=$t0 tick=0
while :; do
  read -r placed backlog applied < <(sql -F ' ' -c "SELECT (SELECT count(*) FROM shop.orders),
    (SELECT count(*) FROM txbox.outbox), (SELECT count(DISTINCT order_id) FROM shop_view.applied)")
  note=
  if ((placing)) && ! kill -0 "${pids[order_service]}" 2>/dev/null; then
    placing=0
    wait "${pids[order_service]}" || { cat "$logs/order_service.log" >&2; exit 1; }
    unset "pids[order_service]"
    note="order_service done"
  fi
  if ((!killed && placed * 3 >= orders && applied > 0)); then
    alive relay-a projector
    kill -KILL "${pids[relay-a]}" "${pids[projector]}"
    wait "${pids[relay-a]}" "${pids[projector]}" 2>/dev/null || true
    unset "pids[relay-a]" "pids[projector]"
    killed=1 kill_at=$placed kill_t=$(now)
    note="${note:+$note; }SIGKILL relay-a and the projector"
  elif ((killed && !restarted)) && older "$kill_t" 2; then
    start_relay relay-a
    start_projector
    restarted=1
    note="${note:+$note; }restarted relay-a and the projector"
  fi
  ((restarted)) && alive relay-a projector
  alive relay-b
  finished=0
  ((!placing && restarted && applied >= placed)) && finished=1
  if ((tick % 2 == 0 || finished)) || [[ -n $note ]]; then
    printf '  %5ss  placed %6s/%s  outbox backlog %6s  applied %6s%s\n' "$(since "$t0")" \
      "$placed" "$orders" "$backlog" "$applied" "${note:+   << $note}"
  fi
  tick=$((tick + 1))
  ((finished)) && break
  if ((applied != last_applied)); then
    last_applied=$applied stall_t=$(now)
  elif ((!placing)) && older "$stall_t" 60; then
    echo "  no progress for 60 s: giving up waiting" >&2
    break
  fi
  sleep 0.5
done
placed_line=$(tail -1 "$logs/order_service.log")
for name in projector relay-a relay-b; do stop_proc "$name"; done
projector_dups=$(metric txbox_inbox_duplicates_total)

step "5/5 summary"
read -r n_orders kafka_records inbox_rows runs twice lost late mismatched dead e2e_secs \
  p50 p99 pmax < <(sql -F ' ' <<SQL
WITH a AS (SELECT a.*, customer_seq < max(customer_seq) OVER (PARTITION BY customer ORDER BY n
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS late
           FROM shop_view.applied a),
     want AS (SELECT customer, count(*) AS orders, sum(amount_cents) AS amount_cents,
                     max(customer_seq) AS last_seq FROM shop.orders GROUP BY customer),
     lat AS (SELECT extract(epoch FROM applied_at - placed_at)::float8 AS s
             FROM shop_view.applied)
SELECT (SELECT count(*) FROM shop.orders),
       (SELECT coalesce(sum(next_offset), 0) FROM txbox.inbox_offsets WHERE consumer = '$consumer'),
       (SELECT count(*) FROM txbox.inbox WHERE consumer = '$consumer'),
       (SELECT count(*) FROM a),
       (SELECT count(*) - count(DISTINCT message_id) FROM a),
       (SELECT count(*) FROM shop.orders o
         WHERE NOT EXISTS (SELECT 1 FROM shop_view.applied x WHERE x.order_id = o.id)),
       (SELECT count(*) FROM a WHERE late),
       (SELECT count(*) FROM want w FULL JOIN shop_view.customer_orders v USING (customer)
         WHERE (v.orders, v.amount_cents, v.last_seq)
               IS DISTINCT FROM (w.orders, w.amount_cents, w.last_seq)),
       (SELECT count(*) FROM txbox.outbox_dead) + (SELECT count(*) FROM txbox.inbox_dead),
       (SELECT coalesce(round(extract(epoch FROM max(applied_at) - min(placed_at)), 1), 0)
          FROM shop_view.applied),
       (SELECT concat_ws(' ',
          coalesce(round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY s)), 0),
          coalesce(round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY s)), 0),
          coalesce(round(1000 * max(s)), 0)) FROM lat)
SQL
)
dups=$((kafka_records - inbox_rows))
ok=1
((lost == 0 && late == 0 && twice == 0 && mismatched == 0 && dead == 0 && runs == n_orders)) || ok=0
ms() {  # ms MILLISECONDS: "85 ms" or "7.9 s"
  awk -v m="${1:-0}" 'BEGIN { if (m < 1000) printf "%d ms", m; else printf "%.1f s", m / 1000 }'
}
row() { printf '  %-34s %9s   %s\n' "$@"; }
more() { printf '%49s%s\n' "" "$1"; }
rate=$(awk -v n="$n_orders" -v s="$e2e_secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
placed_rate=$(sed -nE 's/.*\(([0-9]+) orders\/s.*/\1/p' <<<"$placed_line")
printf '\n'
row "orders placed" "$(int "$n_orders")" \
  "$writers writers, $(int "${placed_rate:-0}") orders/s; each order and its message in one transaction"
row "messages published to Kafka" "$(int "$kafka_records")" \
  "$(int "$n_orders") orders + 1 DemoStarted + $(int "$dups") re-sent after the relay kill"
row "duplicates absorbed by the inbox" "$(int "$dups")" \
  "known by ce_id and skipped (the restarted projector's own count: $(int "$projector_dups"))"
row "applied to the read model" "$(int "$runs")" "handler runs logged in shop_view.applied"
row "lost" "$(int "$lost")" "must be 0: orders never applied"
row "applied twice" "$(int "$twice")" "must be 0"
row "out of order (per customer)" "$(int "$late")" \
  "must be 0: applied after a later order of the same customer"
row "read model mismatches" "$(int "$mismatched")" \
  "must be 0: customers whose count, total or last seq differ from shop.orders"
row "dead letters" "$(int "$dead")" "must be 0: outbox_dead + inbox_dead"
row "throughput, end to end" "$(int "$rate")/s" \
  "first order placed → last order applied: $e2e_secs s, kills included"
row "p99 latency, commit → applied" "$(ms "$p99")" \
  "all orders, kills included (p50 $(ms "$p50"), max $(ms "$pmax"))"
row "faults injected" "2 kills" \
  "SIGKILL relay-a and the projector at $(int "$kill_at") orders placed, both restarted 2 s later;"
more "relay-a's shards moved when its $((lease_ttl_ms / 1000)) s leases expired, the projector's"
more "partitions after the group's $((session_timeout_ms / 1000)) s session timeout: the latency tail"
row "time" "$(since "$t0") s" "first order to summary ($(since "$t_start") s in all, with build and servers)"
if ((ok)); then
  printf '\nPASS: every order applied exactly once and in order per customer, through two SIGKILLs.\n'
else
  printf '\nFAIL: see the counts above and the logs in build-demo/demo-logs/\n'
  exit 1
fi
