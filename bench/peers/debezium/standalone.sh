#!/usr/bin/env bash
# Runs the Debezium peer on its own throwaway servers (PostgreSQL with wal_level=logical, Kafka):
#   bench/peers/debezium/standalone.sh [MESSAGES]      (default 100000)
# Builds it if needed, prints msgs/s on stdout like run.sh, stops the servers on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
n=${1:-100000}
[[ -f $here/target/debezium-bench.jar ]] || "$here/build.sh" >&2
servers=$(mktemp -d /tmp/txbox-dbz-bench.XXXXXX)
trap '"$root/scripts/servers.sh" stop "$servers" >&2; rm -rf "$servers"' EXIT
TXBOX_TEST_PG_OPTS="-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10" \
  env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA "$root/scripts/servers.sh" start "$servers" >&2
set -a; . "$servers/endpoints.env"; set +a
"$here/run.sh" "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "$n"
