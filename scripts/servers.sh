#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Apache Kafka (KRaft, single node) on free loopback ports.
#
#   scripts/servers.sh start DIR [pg|kafka|all]  start servers; writes DIR/endpoints.env
#   scripts/servers.sh stop DIR                  stop exactly the processes started in DIR
#   scripts/servers.sh kafka-jars                resolve and cache the broker's jars only
# For fault injection (tests/chaos), on servers that `start DIR` started:
#   scripts/servers.sh stop-kafka DIR [SIGNAL]   kill the broker (SIGKILL: a crash); data stays
#   scripts/servers.sh start-kafka DIR           run it again: same config, ports and data
#   scripts/servers.sh stop-pg DIR [MODE]        pg_ctl stop -m MODE (default immediate)
#   scripts/servers.sh start-pg DIR              start it again: same data directory and port
#
# endpoints.env holds TXBOX_TEST_PG (the database owner, CREATEROLE, not superuser),
# TXBOX_TEST_PG_ADMIN (superuser), TXBOX_TEST_KAFKA (bootstrap servers) and the pids.
# TXBOX_TEST_KAFKA_PARTITIONS (default 1) sets the partitions of auto-created topics.
# TXBOX_TEST_PG_OPTS adds postgres server options (e.g. "-c wal_level=logical" for Debezium).
# If TXBOX_TEST_PG and TXBOX_TEST_KAFKA are already set, `start` starts nothing and records
# them, so the tests can run against servers you point them at.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
KAFKA_VERSION=3.9.1
cache=${TXBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/txbox}
jars=$cache/kafka-$KAFKA_VERSION

log() { printf '[servers] %s\n' "$*" >&2; }
die() { printf '[servers] error: %s\n' "$*" >&2; exit 1; }

free_port() {
  local p
  for p in $(shuf -i 20000-59999 -n 200); do
    if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
  done
  die "no free TCP port found on 127.0.0.1"
}

kafka_jars() {
  if [[ -f $jars/.complete ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (scripts/install-deps.sh installs it)"
  log "resolving Apache Kafka $KAFKA_VERSION broker jars from Maven Central into $jars"
  rm -rf "$jars.tmp"
  mvn -q -B -f "$root/tests/harness/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$jars.tmp" >&2 \
    || die "could not resolve the Kafka broker jars with mvn (is Maven Central reachable?)"
  touch "$jars.tmp/.complete"
  rm -rf "$jars"
  mv "$jars.tmp" "$jars"
}

# Runs a command as an unprivileged user when we are root (initdb refuses root).
pg_user=
as_pg() {
  if [[ -n $pg_user ]]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi
}

start_pg() {
  local dir=$1 bindir port
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [[ -x $bindir/initdb ]] || bindir=/usr/lib/postgresql/15/bin
  [[ -x $bindir/initdb ]] || die "PostgreSQL 15 server binaries not found (install postgresql-15)"
  if [[ $(id -u) == 0 ]]; then
    pg_user=postgres
    id -u "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home txbox-test 2>/dev/null || true
    id -u "$pg_user" >/dev/null 2>&1 || pg_user=txbox-test
  fi
  # The cluster lives where the unprivileged user can reach it: DIR's parents may be
  # private to root (a mktemp -d checkout), so as root it goes to its own /tmp directory.
  local pgdir=$dir/pg
  if [[ -n $pg_user ]]; then
    pgdir=$(mktemp -d /tmp/txbox-pg.XXXXXX)
    chown "$pg_user" "$pgdir"
    chmod 755 "$pgdir"
  else
    mkdir -p "$pgdir"
  fi
  echo "$pgdir" > "$dir/pg.dir"
  port=$(free_port)
  log "PostgreSQL: initdb in $pgdir/data"
  as_pg "$bindir/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale >"$pgdir/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -5 "$pgdir/initdb.log")"
  log "PostgreSQL: starting on 127.0.0.1:$port"
  # Kept for start-pg, which starts the cluster again with the same options.
  echo "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c max_connections=200 -c fsync=off -c synchronous_commit=on ${TXBOX_TEST_PG_OPTS:-}" \
    > "$dir/pg.opts"
  as_pg "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 start \
    -o "$(cat "$dir/pg.opts")" >/dev/null \
    || die "PostgreSQL did not start: $(tail -5 "$pgdir/server.log")"
  head -1 "$pgdir/data/postmaster.pid" > "$dir/pg.pid"
  echo "$bindir" > "$dir/pg.bindir"
  local admin="host=127.0.0.1 port=$port dbname=postgres user=postgres"
  psql "$admin" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE txbox_owner LOGIN CREATEROLE PASSWORD 'owner-secret';
CREATE DATABASE txbox OWNER txbox_owner;
SQL
  local owner="host=127.0.0.1 port=$port dbname=txbox user=txbox_owner"
  for f in "$root"/migrations/V*__*.sql; do
    psql "$owner" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null 2>"$pgdir/migrate.log" \
      || die "migration $(basename "$f") failed: $(cat "$pgdir/migrate.log")"
  done
  {
    echo "TXBOX_TEST_PG='$owner'"
    echo "TXBOX_TEST_PG_ADMIN='$admin'"
    echo "TXBOX_TEST_PG_BINDIR='$bindir'"
    echo "TXBOX_TEST_PG_DATA='$pgdir/data'"
    echo "TXBOX_TEST_PG_USER='$pg_user'"
  } >> "$dir/endpoints.env"
}

start_kafka() {
  local dir=$1 port cport cluster_id
  command -v java >/dev/null || die "java not found (scripts/install-deps.sh installs openjdk-17)"
  kafka_jars
  port=$(free_port)
  cport=$(free_port)
  mkdir -p "$dir/kafka/data"
  cat > "$dir/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/kafka/data
num.partitions=${TXBOX_TEST_KAFKA_PARTITIONS:-1}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# lets tests use short session timeouts (the broker default minimum is 6 s)
group.min.session.timeout.ms=1000
auto.create.topics.enable=true
PROPS
  cat > "$dir/kafka/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/kafka/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
PROPS
  local jvm=(java -Xms256m -Xmx1g -Dlog4j.configuration="file:$dir/kafka/log4j.properties" -cp "$jars/*")
  cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/kafka/server.properties" \
    >"$dir/kafka/format.log" 2>&1 || die "formatting Kafka storage failed: $(tail -5 "$dir/kafka/format.log")"
  log "Kafka $KAFKA_VERSION: starting on 127.0.0.1:$port"
  launch_kafka "$dir"
  {
    echo "TXBOX_TEST_KAFKA='127.0.0.1:$port'"
    echo "TXBOX_TEST_KAFKA_DIR='$dir/kafka'"
    echo "TXBOX_TEST_KAFKA_JARS='$jars'"
  } >> "$dir/endpoints.env"
}

# Runs the broker configured in DIR/kafka in the background (its own session) and waits until
# it logs a new "Kafka Server started" line (the log is appended to across restarts).
launch_kafka() {
  local dir=$1 before i
  local jvm=(java -Xms256m -Xmx1g -Dlog4j.configuration="file:$dir/kafka/log4j.properties" -cp "$jars/*")
  before=$(grep -c "Kafka Server started" "$dir/kafka/server.log" 2>/dev/null || true)
  setsid "${jvm[@]}" kafka.Kafka "$dir/kafka/server.properties" >>"$dir/kafka/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/kafka.pid"
  for i in $(seq 1 240); do
    if (( $(grep -c "Kafka Server started" "$dir/kafka/server.log" 2>/dev/null || true) > ${before:-0} )); then
      return 0
    fi
    kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || die "Kafka exited at start: $(tail -5 "$dir/kafka/stdout.log" "$dir/kafka/server.log" 2>/dev/null)"
    sleep 0.25
  done
  die "Kafka did not start within 60 s"
}

# True while pid $1 runs (a zombie does not count: nobody may be reaping it yet).
running() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

# The value of NAME ($2) in DIR/endpoints.env.
env_value() {
  sed -n "s/^$2='\(.*\)'\$/\1/p" "$1/endpoints.env" | tail -1
}

stop_kafka() {
  local dir=$1 sig=${2:-KILL} pid i
  [[ -f $dir/kafka.pid ]] || die "no Kafka broker of $dir is running (no $dir/kafka.pid)"
  pid=$(cat "$dir/kafka.pid")
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 240); do running "$pid" || break; sleep 0.1; done
  running "$pid" && die "Kafka (pid $pid) did not stop on SIG$sig within 24 s"
  rm -f "$dir/kafka.pid"
}

start_kafka_again() {
  local dir=$1
  [[ -f $dir/kafka/server.properties ]] || die "no Kafka broker was set up in $dir (start it first)"
  [[ -f $dir/kafka.pid ]] && running "$(cat "$dir/kafka.pid")" && die "Kafka of $dir is running"
  kafka_jars
  launch_kafka "$dir"
}

stop_pg() {
  local dir=$1 mode=${2:-immediate}
  [[ -f $dir/pg.dir && -f $dir/pg.bindir ]] || die "no PostgreSQL cluster was set up in $dir"
  pg_user=$(env_value "$dir" TXBOX_TEST_PG_USER)
  as_pg "$(cat "$dir/pg.bindir")/pg_ctl" -D "$(cat "$dir/pg.dir")/data" -m "$mode" -w -t 60 stop \
    >/dev/null || die "pg_ctl stop -m $mode failed"
  rm -f "$dir/pg.pid"
}

start_pg_again() {
  local dir=$1 pgdir bindir
  [[ -f $dir/pg.dir && -f $dir/pg.bindir && -f $dir/pg.opts ]] \
    || die "no PostgreSQL cluster was set up in $dir (start it first)"
  pgdir=$(cat "$dir/pg.dir")
  bindir=$(cat "$dir/pg.bindir")
  pg_user=$(env_value "$dir" TXBOX_TEST_PG_USER)
  as_pg "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 300 start \
    -o "$(cat "$dir/pg.opts")" >/dev/null \
    || die "PostgreSQL did not start again: $(tail -5 "$pgdir/server.log")"
  head -1 "$pgdir/data/postmaster.pid" > "$dir/pg.pid"
}

stop_all() {
  local dir=$1 pid i
  [[ -d $dir ]] || return 0
  if [[ -f $dir/kafka.pid ]]; then
    pid=$(cat "$dir/kafka.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "Kafka: stopping pid $pid"
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/kafka.pid"
  fi
  if [[ -f $dir/pg.pid ]]; then
    pid=$(cat "$dir/pg.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "PostgreSQL: stopping pid $pid"
      kill -INT "$pid" 2>/dev/null || true   # fast shutdown
      for i in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pg.pid"
  fi
  if [[ -f $dir/pg.dir ]]; then
    local pgdir
    pgdir=$(cat "$dir/pg.dir")
    [[ $pgdir == /tmp/txbox-pg.* ]] && rm -rf "$pgdir"
    rm -f "$dir/pg.dir"
  fi
}

cmd=${1:-}
case $cmd in
  start)
    dir=${2:?usage: servers.sh start DIR [pg|kafka|all]}
    what=${3:-all}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_all "$dir"
    rm -rf "$dir/pg" "$dir/kafka" "$dir/endpoints.env"
    if [[ -n ${TXBOX_TEST_PG:-} && -n ${TXBOX_TEST_KAFKA:-} ]]; then
      log "using the servers given in TXBOX_TEST_PG and TXBOX_TEST_KAFKA"
      { echo "TXBOX_TEST_PG='$TXBOX_TEST_PG'"; echo "TXBOX_TEST_KAFKA='$TXBOX_TEST_KAFKA'";
        echo "TXBOX_TEST_PG_ADMIN='${TXBOX_TEST_PG_ADMIN:-$TXBOX_TEST_PG}'"; } > "$dir/endpoints.env"
      exit 0
    fi
    trap 'stop_all "$dir"' ERR
    t0=$(date +%s.%N)
    [[ $what == kafka ]] || start_pg "$dir"
    t1=$(date +%s.%N)
    [[ $what == pg ]] || start_kafka "$dir"
    t2=$(date +%s.%N)
    log "$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v f="$dir/endpoints.env" \
      'BEGIN { printf "ready: PostgreSQL %.1f s, Kafka %.1f s; endpoints in %s", b - a, c - b, f }')"
    ;;
  stop)
    stop_all "${2:?usage: servers.sh stop DIR}"
    ;;
  kafka-jars)
    kafka_jars
    ;;
  stop-kafka)
    stop_kafka "${2:?usage: servers.sh stop-kafka DIR [SIGNAL]}" "${3:-KILL}"
    ;;
  start-kafka)
    start_kafka_again "${2:?usage: servers.sh start-kafka DIR}"
    ;;
  stop-pg)
    stop_pg "${2:?usage: servers.sh stop-pg DIR [immediate|fast|smart]}" "${3:-immediate}"
    ;;
  start-pg)
    start_pg_again "${2:?usage: servers.sh start-pg DIR}"
    ;;
  *)
    echo "usage: $0 start DIR [pg|kafka|all] | stop DIR | kafka-jars |" \
      "stop-kafka DIR [SIGNAL] | start-kafka DIR | stop-pg DIR [MODE] | start-pg DIR" >&2
    exit 2
    ;;
esac
