#!/usr/bin/env bash
# The phantom guard's latency cost: txbox-relay without and with --wait-for-standbys 1 at 10 %
# of its drain rate, on throwaway servers (PostgreSQL primary + async streaming standby, Kafka).
#   bench/standby_gate.sh [BUILD_DIR] [--seconds S] [--load F]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
dir=$(mktemp -d /tmp/txbox-gate-bench.XXXXXX)
trap '"$root/scripts/servers.sh" stop "$dir"; rm -rf "$dir"' EXIT
cmake --build "$build" --target standby_gate_bench txbox-relay >/dev/null
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA TXBOX_TEST_PG_STANDBY=1 "$root/scripts/servers.sh" start "$dir"
# shellcheck disable=SC1091
source "$dir/endpoints.env"
psql "$TXBOX_TEST_PG_ADMIN" -qAt -c "GRANT pg_monitor TO txbox_owner" >/dev/null
"$build/bench/standby_gate_bench" "$TXBOX_TEST_PG_MULTI" "$TXBOX_TEST_KAFKA" \
  "$build/relay/txbox-relay" "$@"
