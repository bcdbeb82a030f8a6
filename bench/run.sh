#!/usr/bin/env bash
# Benchmarks txbox against this machine's limits (and, with --peers, against peer outbox
# relays), in one run on throwaway servers. Progress on stderr; the tables on stdout and in
# build-bench/results/ (results.md, relay.tsv for bench/plot.sh). The relay benchmark measures
# both delivery modes: exactly_once (relay x1, x2, commit->handler at 10/50% load) beside
# at_least_once, against issue 15's target of 0.7x (about 90 s of the run).
# Each relay drain is compared with the limit: min(Kafka's own ProducerPerformance at the relay's
# producer settings, bench/producer_perf.sh, and a raw claim + delete drain of the outbox). The
# headline drains (relay x1, x2, x4, and the peers) write to topics of 6 partitions; relay x1 and
# x2 also to 1 partition, against the limit at 1 partition. PostgreSQL is durable by default
# (fsync=on, synchronous_commit=on); the results' header says which.
#   bench/run.sh [MESSAGES] [--peers] [--fast] [--10m] [--big N] [--plots] [--backlogs A,B,...]
#                [--writers]
#     MESSAGES    messages per throughput run (default 100000)
#     --peers     also run the peers in bench/peers/ (Watermill SQL->Kafka forwarder, Go;
#                 Debezium embedded + outbox router, Java; pg-transactional-outbox, Node.js);
#                 PostgreSQL then runs with wal_level=logical for the two that decode the WAL
#     --fast      PostgreSQL with fsync=off (commits not durable across a crash of the machine:
#                 the old default, faster on slow disks)
#     --10m       a realistic big backlog: 10,000,000 messages written through enqueue at a
#                 paced rate with no relay running (autovacuum on), then drained by one relay,
#                 against 10k filled and drained the same way (about 10 minutes more)
#     --big N     the same with N messages (e.g. 200000 for a quick check)
#     --backlogs  the SQL-filled backlog runs (default 10000,1000000; the first 100k drained)
#     --plots     write the PNG plots into docs/ (bench/plot.sh; Python venv with matplotlib)
#     --writers   first, the writers' commit ceiling (bench/writers.sh, on its own durable
#                 PostgreSQL; about 12 minutes): enqueuing transactions against plain inserts
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
messages=100000 peers=0 plots=0 fast=0 backlogs=10000,1000000 big= writers=0
while (($#)); do
  case $1 in
    --peers) peers=1 ;;
    --fast) fast=1 ;;
    --10m) big=10000000 ;;
    --big) big=$2; shift ;;
    --plots) plots=1 ;;
    --backlogs) backlogs=$2; shift ;;
    --writers) writers=1 ;;
    [0-9]*) messages=$1 ;;
    *) echo "usage: bench/run.sh [MESSAGES] [--peers] [--fast] [--10m] [--big N] [--plots] [--backlogs A,B] [--writers]" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

scripts/install-deps.sh
say "building (Release, build-bench)"
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target relay_bench inbox_bench txbox-relay | tail -1
if ((peers)); then
  bench/peers/watermill/build.sh
  bench/peers/debezium/build.sh >&2
  if [[ -x bench/peers/pg-transactional-outbox/build.sh ]]; then
    bench/peers/pg-transactional-outbox/build.sh >&2
  fi
fi
if ((writers)); then
  say "writers' commit ceiling (bench/writers.sh)"
  bench/writers.sh
fi
# scripts/servers.sh starts PostgreSQL with fsync=off; options here come after it and win.
pg_opts="-c fsync=on -c synchronous_commit=on"
((fast)) && pg_opts="-c fsync=off -c synchronous_commit=on"
((peers)) && pg_opts+=" -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10"
export TXBOX_TEST_PG_OPTS=$pg_opts
# Topics the peers (and anything else) auto-create get 6 partitions; relay_bench and inbox_bench
# create theirs explicitly with the partitions they measure.
export TXBOX_TEST_KAFKA_PARTITIONS=6

out=build-bench/results
mkdir -p "$out"
servers=$(mktemp -d /tmp/txbox-bench.XXXXXX)
trap 'scripts/servers.sh stop "$servers"; rm -rf "$servers"' EXIT
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers"
set -a; . "$servers/endpoints.env"; set +a

durability="PostgreSQL fsync=$(psql "$TXBOX_TEST_PG" -qAtX -c 'SHOW fsync'),"
durability+=" synchronous_commit=$(psql "$TXBOX_TEST_PG" -qAtX -c 'SHOW synchronous_commit')"
((fast)) && durability+=" (--fast: not durable)" || durability+=" (durable)"
say "$durability"
{
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores; load average at start:" \
    "$(cut -d' ' -f1-3 /proc/loadavg); $messages messages; backlogs $backlogs${big:+; big backlog $big};" \
    "$durability; Kafka topics of 6 partitions unless marked"
  echo
} > "$out/results.md"

# Kafka's own limit: ProducerPerformance at the relay's producer settings, on 1 and 6 partitions
# (at least 200,000 records, so the JVM's warm-up is a small part of the run).
perf_records=$((messages > 200000 ? messages : 200000))
perf_args=()
for p in 1 6; do
  say "Kafka ProducerPerformance: $perf_records records, $p partition(s)"
  rate=$(bench/producer_perf.sh "$TXBOX_TEST_KAFKA" "$perf_records" "$p" 2>"$out/producer_perf_${p}p.log") \
    || { tail -20 "$out/producer_perf_${p}p.log" >&2; exit 1; }
  say "  $rate records/s"
  perf_args+=(--producer-perf-${p}p "$rate")
done

say "inbox benchmark"
# stdout is the tables; the progress and the consumer's log lines (stderr) go to inbox.log.
build-bench/bench/inbox_bench "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "$messages" 2>"$out/inbox.log" \
  | tee "$out/inbox.md"
# no_logs FILE: fails when a log line (spdlog's "[2026-…] [info] …") is in FILE, a result.
no_logs() {
  if grep -qE '^\[[0-9]{4}-[0-9]{2}-[0-9]{2} ' "$1"; then
    echo "bench/run.sh: log lines in $1 (the results): $(grep -m1 -E '^\[[0-9]{4}-' "$1")" >&2
    exit 1
  fi
}
no_logs "$out/inbox.md"
# The inbox's ratio at max_batch 500 (the default), for the summary table.
inbox_ratio=$(awk -F'|' '/max_batch 500 \(/ {gsub(/ /, "", $4); print $4}' "$out/inbox.md")

peer_args=()
if ((peers)); then
  say "peer: Watermill SQL->Kafka forwarder"
  rate=$(bench/peers/watermill/run.sh "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "$messages")
  peer_args+=(--peer "watermill_forwarder=$rate")
  say "peer: Debezium embedded PostgreSQL connector + outbox event router (backlog mode)"
  rate=$(DBZ_BENCH_MODE=backlog bench/peers/debezium/run.sh "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "$messages")
  peer_args+=(--peer "debezium_outbox=$rate")
  if [[ -x bench/peers/pg-transactional-outbox/run.sh ]]; then
    say "peer: pg-transactional-outbox (npm)"
    rate=$(bench/peers/pg-transactional-outbox/run.sh "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" "$messages")
    peer_args+=(--peer "pg_transactional_outbox=$rate")
  fi
fi

say "relay benchmark"
build-bench/bench/relay_bench "$TXBOX_TEST_PG" "$TXBOX_TEST_KAFKA" build-bench/relay/txbox-relay \
  --messages "$messages" --backlogs "$backlogs" ${big:+--big "$big"} --out "$out/relay.tsv" \
  ${inbox_ratio:+--inbox-ratio "$inbox_ratio"} "${perf_args[@]}" "${peer_args[@]}" \
  | tee "$out/relay.md"
no_logs "$out/relay.md"
{
  cat "$out/relay.md"
  echo
  cat "$out/inbox.md"
  echo
  if ((writers)); then cat "$out/writers.md"; echo; fi
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$out/results.md"
if ((plots)); then bench/plot.sh "$out/relay.tsv" docs; fi
say "done: $out/results.md"
