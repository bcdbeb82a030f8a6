#!/usr/bin/env bash
# Runs the Debezium peer: bench/peers/debezium/run.sh PG_CONNINFO KAFKA_BOOTSTRAP MESSAGES
# Prints msgs/s (MESSAGES over the time from the first commit of the outbox rows to Kafka's ack
# of the last; JVM start-up, slot creation and a warm-up transaction are not timed). See README.md.
#
# Needs PostgreSQL with wal_level=logical (TXBOX_TEST_PG_OPTS="-c wal_level=logical ..." for
# scripts/servers.sh) and a superuser conninfo in TXBOX_TEST_PG_ADMIN (in the environment, as
# bench/run.sh sources endpoints.env; default: PG_CONNINFO with user=postgres): it makes the role
# dbz_bench with REPLICATION (only a superuser can grant it) and lets it create a schema in the
# database. The connector and the row writes then use PG_CONNINFO with user=dbz_bench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pg=$1 kafka=$2 n=$3
admin=${TXBOX_TEST_PG_ADMIN:-"$pg user=postgres"}
dbname=$(psql "$pg" -qAtX -c 'SELECT current_database()')
[[ $(psql "$pg" -qAtX -c 'SHOW wal_level') == logical ]] \
  || { echo "debezium peer: PostgreSQL needs wal_level=logical" >&2; exit 1; }
psql "$admin" -qAtX -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbz_bench') THEN
    CREATE ROLE dbz_bench LOGIN REPLICATION;
  END IF;
END \$\$;
GRANT CREATE ON DATABASE "$dbname" TO dbz_bench;
SQL
[[ -f $here/target/debezium-bench.jar ]] || "$here/build.sh" >&2
exec java -Xms512m -Xmx1g \
  -Dorg.slf4j.simpleLogger.logFile=System.err \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${DBZ_LOG_LEVEL:-warn}" \
  -Dorg.slf4j.simpleLogger.log.io.debezium.metrics.stats.MeasurementCollector=error \
  -cp "$here/target/debezium-bench.jar:$here/target/lib/*" \
  txbox.bench.DebeziumOutboxBench "$pg user=dbz_bench" "$kafka" "$n"
