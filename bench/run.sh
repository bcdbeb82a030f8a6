#!/usr/bin/env bash
# Benchmarks txbox-relay and txbox::inbox against this machine's limits, in one run on
# throwaway servers.
#   bench/run.sh [MESSAGES]     (default 100000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target relay_bench inbox_bench txbox-relay | tail -1
servers=$(mktemp -d /tmp/txbox-bench.XXXXXX)
trap 'scripts/servers.sh stop "$servers"; rm -rf "$servers"' EXIT
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers"
set -a; . "$servers/endpoints.env"; set +a
build-bench/bench/relay_bench "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" build-bench/relay/txbox-relay "${1:-100000}"
build-bench/bench/inbox_bench "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "${1:-100000}"
