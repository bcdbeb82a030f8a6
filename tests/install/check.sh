#!/usr/bin/env bash
# Installs the build into a fresh prefix, builds examples/order_service against it with
# find_package(txbox) as a user would, and runs it against the test database.
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/lib/cmake/txbox/txboxConfig.cmake"
test -f "$work/prefix/include/txbox/outbox.hpp"
test -f "$work/prefix/share/txbox/migrations/V1__create_txbox_schema.sql"
cmake -S "$src/examples/order_service" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j2 >/dev/null
# The writer links no librdkafka.
if ldd "$work/build/order_service" | grep -q rdkafka; then
  echo "order_service links librdkafka: txbox::outbox must not pull it in" >&2
  exit 1
fi
set -a; . "$TXBOX_TEST_ENV_FILE"; set +a
"$work/build/order_service" --db "$TXBOX_TEST_PG" --orders 25 | tee "$work/out.txt"
grep -q "25 orders placed" "$work/out.txt"
