#!/usr/bin/env bash
# What an idle relay costs the database (issue 24): statements per second and PostgreSQL's CPU
# with one relay running on an empty outbox, for each wake-up, against no relay at all, in one
# run on throwaway servers (durable PostgreSQL, pg_stat_statements counting every statement).
#   bench/idle_relay.sh [SECONDS] [RELAY]    (default 20 s per row; RELAY: build-bench/relay/txbox-relay)
# Rows: no relay (the baseline: PostgreSQL's own background work), the probe (V6, the default;
# relay.probe_interval_ms = 10), and V5's wake-up (LISTEN, no probe, poll_interval_ms = 500).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-20}
relay=${2:-build-bench/relay/txbox-relay}
[[ -x $relay ]] || { echo "no relay binary at $relay (build it: cmake --build build-bench --target txbox-relay)" >&2; exit 2; }
say() { echo "[idle_relay $(date +%H:%M:%S)] $*" >&2; }

servers=$(mktemp -d /tmp/txbox-idle.XXXXXX)
relay_pid=
trap '[[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null; scripts/servers.sh stop "$servers" >/dev/null; rm -rf "$servers"' EXIT
export TXBOX_TEST_PG_OPTS="-c fsync=on -c synchronous_commit=on -c shared_preload_libraries=pg_stat_statements "
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers" all >/dev/null
set -a; . "$servers/endpoints.env"; set +a
admin_txbox="${TXBOX_TEST_PG_ADMIN/dbname=postgres/dbname=txbox}"
psql "$admin_txbox" -qAtX -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null

# CPU ticks (user + system) of this cluster's processes (the postmaster and its children), one
# "pid ticks" line each, from /proc.
pg_ticks() {
  local pid postmaster
  postmaster=$(cat "$servers/pg.pid")
  for pid in "$postmaster" $(pgrep -P "$postmaster"); do
    awk -v p="$pid" '{print p, $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true
  done
}
# CPU seconds between two pg_ticks samples, over the processes alive in both (a backend that
# started or ended in between, such as this script's psql sessions, is left out).
cpu_between() {
  awk -v c="$(getconf CLK_TCK)" 'NR == FNR {t[$1] = $2; next} ($1 in t) {d += $2 - t[$1]}
    END {printf "%.3f", d / c}' "$1" "$2"
}
# Statements run in database txbox so far, by anyone but this script's own reads.
statements() {
  psql "$admin_txbox" -qAtX -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s
    JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'txbox'
    AND s.query NOT LIKE '%pg_stat_statements%'"
}

measure() {  # LABEL [relay env...]: one row
  local label=$1; shift
  if (($#)); then
    env "$@" "$relay" --database-url "$TXBOX_TEST_PG" --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" \
      --name idle >"$servers/relay.log" 2>&1 &
    relay_pid=$!
  fi
  sleep 5  # started, shards taken, idle (and PostgreSQL's start-up work done)
  local s0 s1
  s0=$(statements); pg_ticks >"$servers/cpu0"
  sleep "$seconds"
  pg_ticks >"$servers/cpu1"; s1=$(statements)
  if (($#)); then kill -TERM "$relay_pid"; wait "$relay_pid" || true; relay_pid=; fi
  awk -v l="$label" -v s=$((s1 - s0)) -v c="$(cpu_between "$servers/cpu0" "$servers/cpu1")" \
    -v t="$seconds" 'BEGIN {printf "| %s | %.1f | %.2f%% |\n", l, s / t, 100 * c / t}'
}

say "$seconds s per row; PostgreSQL durable (fsync=on, synchronous_commit=on)"
echo "Idle relay cost, run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, commit $(git rev-parse --short HEAD),"
echo "one relay on an empty outbox, $seconds s per row, statements counted by pg_stat_statements"
echo "(the relay's lease ticks, backlog reads, claims and probes), CPU of the cluster's postgres processes."
echo
echo "| wake-up | statements/s | PostgreSQL CPU (% of one core) |"
echo "|---|---|---|"
say "no relay"
measure "no relay (PostgreSQL's background work)"
say "probe (V6 default)"
measure "probe (V6): relay.probe_interval_ms = 10" TXBOX_RELAY_NAME=idle
say "V5 wake-up: LISTEN, no probe"
measure "NOTIFY (V5): LISTEN, poll_interval_ms = 500, no probe" TXBOX_RELAY_LISTEN_NOTIFY=true \
  TXBOX_RELAY_PROBE_INTERVAL_MS=0
say "probe at 50 ms"
measure "probe, relay.probe_interval_ms = 50" TXBOX_RELAY_PROBE_INTERVAL_MS=50
