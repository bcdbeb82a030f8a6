#!/usr/bin/env bash
# Runs the pg-transactional-outbox peer:
#   bench/peers/pg-transactional-outbox/run.sh PG_CONNINFO KAFKA_BOOTSTRAP MESSAGES [PG_ADMIN_CONNINFO]
# Prints msgs/s (first outbox message in Kafka to the MESSAGES-th) on stdout, progress on stderr.
# PG_ADMIN_CONNINFO (default: $TXBOX_TEST_PG_ADMIN) is a superuser conninfo: the replication
# listener's role needs the REPLICATION attribute and a logical replication slot, which only a
# superuser can grant/create here. The replication listener needs the server started with
# wal_level=logical (TXBOX_TEST_PG_OPTS="-c wal_level=logical -c max_replication_slots=10
# -c max_wal_senders=10" scripts/servers.sh start DIR); on a server without it the peer
# measures the library's polling listener instead and says so on stderr.
# Knobs (see README.md): PTO_MODE=replication|polling, PTO_CONCURRENCY, PTO_POOL, PTO_PRODUCER,
# PTO_BATCH, PTO_POLL_MS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
(($# >= 3)) || { echo "usage: $0 PG_CONNINFO KAFKA_BOOTSTRAP MESSAGES [PG_ADMIN_CONNINFO]" >&2; exit 2; }
PTO_ADMIN=${4:-${TXBOX_TEST_PG_ADMIN:-}} exec node "$here/bench.js" "$1" "$2" "$3"
