#!/usr/bin/env bash
# The txbox demo, end to end on throwaway local servers:
#   1. installs dependencies, builds and installs txbox into build-demo/prefix;
#   2. builds examples/order_service against the installed package (find_package(txbox));
#   3. starts PostgreSQL 15 and Apache Kafka on free loopback ports, applies the migrations;
#   4. places N orders, each with its OrderPlaced message in the same transaction;
#   5. shows the outbox, stops every server it started and removes its data.
#   scripts/demo.sh [N]        (default N = 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
orders=${1:-10000}
[[ $orders =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/demo.sh [ORDERS]" >&2; exit 2; }
step() { printf '\n== %s\n' "$*"; }

step "1/5 dependencies and build"
scripts/install-deps.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DTXBOX_BUILD_TESTS=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" | tail -1
cmake --install build-demo --prefix build-demo/prefix >/dev/null
echo "installed into build-demo/prefix"

step "2/5 order_service, built against the installed package"
cmake -S examples/order_service -B build-demo/order_service -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/build-demo/prefix" >/dev/null
cmake --build build-demo/order_service | tail -1

step "3/5 throwaway PostgreSQL + Kafka"
servers=$(mktemp -d /tmp/txbox-demo.XXXXXX)
cleanup() {
  step "5/5 stopping the servers"
  scripts/servers.sh stop "$servers" || true
  rm -rf "$servers"
  echo "done: no process left behind"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers"
set -a; . "$servers/endpoints.env"; set +a
psql "$TXBOX_TEST_PG" -qAt -c "SELECT 'schema txbox at version ' || max(version) FROM txbox.schema_version"

step "4/5 placing $orders orders (order row + OrderPlaced message, one transaction each)"
build-demo/order_service/order_service --db "$TXBOX_TEST_PG" --orders "$orders" --customers 100

psql "$TXBOX_TEST_PG" -q -P pager=off <<'SQL'
\echo 'orders and outbox rows (equal: every committed order has its message)'
SELECT (SELECT count(*) FROM shop.orders) AS orders, (SELECT count(*) FROM txbox.outbox) AS outbox_rows,
       (SELECT count(DISTINCT shard) FROM txbox.outbox) AS shards_used;
\echo 'the first rows of the outbox'
SELECT id, shard, topic, key, convert_from(payload, 'UTF8') AS payload,
       headers->3->>1 AS ce_type FROM txbox.outbox ORDER BY id LIMIT 5;
SQL
echo "(the relay that publishes these rows to Kafka comes with txbox-relay)"
