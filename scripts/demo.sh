#!/usr/bin/env bash
# The txbox demo, end to end on throwaway local servers:
#   1. installs dependencies, builds and installs txbox into build-demo/prefix;
#   2. builds examples/order_service against the installed package (find_package(txbox));
#   3. starts PostgreSQL 15 and Apache Kafka on free loopback ports, applies the migrations;
#   4. places N orders, each with its OrderPlaced message in the same transaction;
#   5. runs two txbox-relay daemons that publish the outbox to Kafka, shows their metrics;
#   6. stops every process and server it started and removes its data.
#   scripts/demo.sh [N]        (default N = 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
orders=${1:-10000}
[[ $orders =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/demo.sh [ORDERS]" >&2; exit 2; }
step() { printf '\n== %s\n' "$*"; }

step "1/6 dependencies and build"
scripts/install-deps.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DTXBOX_BUILD_TESTS=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" | tail -1
cmake --install build-demo --prefix build-demo/prefix >/dev/null
echo "installed into build-demo/prefix"

step "2/6 order_service, built against the installed package"
cmake -S examples/order_service -B build-demo/order_service -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/build-demo/prefix" >/dev/null
cmake --build build-demo/order_service | tail -1

step "3/6 throwaway PostgreSQL + Kafka"
servers=$(mktemp -d /tmp/txbox-demo.XXXXXX)
relay_pids=()
cleanup() {
  for pid in "${relay_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${relay_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  step "6/6 stopping the relays and the servers"
  scripts/servers.sh stop "$servers" || true
  rm -rf "$servers"
  echo "done: no process left behind"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers"
set -a; . "$servers/endpoints.env"; set +a
psql "$TXBOX_TEST_PG" -qAt -c "SELECT 'schema txbox at version ' || max(version) FROM txbox.schema_version"

step "4/6 placing $orders orders (order row + OrderPlaced message, one transaction each)"
build-demo/order_service/order_service --db "$TXBOX_TEST_PG" --orders "$orders" --customers 100

psql "$TXBOX_TEST_PG" -q -P pager=off <<'SQL'
\echo 'orders and outbox rows (equal: every committed order has its message)'
SELECT (SELECT count(*) FROM shop.orders) AS orders, (SELECT count(*) FROM txbox.outbox) AS outbox_rows,
       (SELECT count(DISTINCT shard) FROM txbox.outbox) AS shards_used;
\echo 'the first rows of the outbox'
SELECT id, shard, topic, key, convert_from(payload, 'UTF8') AS payload,
       headers->3->>1 AS ce_type FROM txbox.outbox ORDER BY id LIMIT 5;
SQL

step "5/6 two txbox-relay daemons publish the outbox to Kafka (acks=all, idempotent)"
port_of() { echo $((20000 + RANDOM % 30000)); }
metrics_port=$(port_of)
for name in relay-a relay-b; do
  build-demo/prefix/bin/txbox-relay --database-url "$TXBOX_TEST_PG" \
    --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" --name "$name" \
    --http-listen "127.0.0.1:$metrics_port" > "$servers/$name.log" 2>&1 &
  relay_pids+=($!)
  metrics_ports+=("$metrics_port")
  metrics_port=$((metrics_port + 1))
done
start=$(date +%s.%N)
while :; do
  left=$(psql "$TXBOX_TEST_PG" -qAt -c "SELECT count(*) FROM txbox.outbox")
  printf '  ... %s rows left in the outbox\n' "$left"
  [[ $left == 0 ]] && break
  for pid in "${relay_pids[@]}"; do kill -0 "$pid" 2>/dev/null || { cat "$servers"/relay-*.log; exit 1; }; done
  sleep 0.5
done
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
metric() {  # metric PORT NAME: sum of a metric's samples, read over bash's /dev/tcp
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  awk -v n="$2" '$1 ~ "^"n"({|$)" { s += $2 } END { print s + 0 }' <&3
  exec 3<&-
}
total=0
for i in 0 1; do
  n=$(metric "${metrics_ports[$i]}" txbox_relay_published_total)
  echo "  relay-$([[ $i == 0 ]] && echo a || echo b): published $n, shards owned $(metric "${metrics_ports[$i]}" txbox_relay_shards_owned)"
  total=$((total + n))
done
echo "outbox drained in $secs s: $total messages published to topic 'orders', dead letters: $(psql "$TXBOX_TEST_PG" -qAt -c 'SELECT count(*) FROM txbox.outbox_dead')"
echo "relay log (one line per state change):"
sed 's/^/  /' "$servers/relay-a.log"
