#!/usr/bin/env bash
# The writers' commit ceiling (issue 24): business transactions (one order row + their outbox
# messages) committed by 1-64 concurrent writers on a throwaway durable PostgreSQL (fsync=on,
# synchronous_commit=on), against the same transactions with a plain INSERT into a copy of the
# outbox table: txbox's C++ and SQL enqueue on the current schema (every migration, no NOTIFY
# trigger) and on a schema with V1..V5 only (V2's NOTIFY trigger), plus probes for other
# serialisation points. The arms of one group (messages per tx × writers) take turns in slices
# of 1 s, so that the load of a shared machine falls on all of them alike. Progress on stderr;
# the tables on stdout and in build-bench/results/writers.md (the progress, with each cell's
# range over its slices and full wait profile, in writers.log). About 12 minutes with the
# defaults (5 s per cell), 24 with --seconds 10.
#   bench/writers.sh [--seconds S] [--slice S] [--settle S] [--warmup S] [--writers 1,8,32,64]
#                    [--msgs 1,10] [--arms a,b,...] [--keys N] [--payload BYTES]
#                    (see bench/writer_bench.cpp)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { echo "[writers.sh $(date +%H:%M:%S)] $*" >&2; }

say "building writer_bench (Release, build-bench)"
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target writer_bench | tail -1 >&2

# scripts/servers.sh starts PostgreSQL with fsync=off; options here come after it and win.
export TXBOX_TEST_PG_OPTS="-c fsync=on -c synchronous_commit=on"
out=build-bench/results
mkdir -p "$out"
servers=$(mktemp -d /tmp/txbox-writers.XXXXXX)
trap 'scripts/servers.sh stop "$servers"; rm -rf "$servers"' EXIT
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA scripts/servers.sh start "$servers" pg
set -a; . "$servers/endpoints.env"; set +a

# Schema "txbox" has every migration (servers.sh applied them); "txbox_v5" only V1..V5.
migrations/render.sh txbox_v5 --out "$servers/v5"
for f in "$servers"/v5/V[1-5]__*.sql; do
  psql "$TXBOX_TEST_PG" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
done
triggers() {
  psql "$TXBOX_TEST_PG" -qAtX -v schema="$1" <<<\
    "SELECT count(*) FROM pg_trigger WHERE tgrelid = (:'schema' || '.outbox')::regclass AND NOT tgisinternal"
}
if [[ $(triggers txbox) != 0 || $(triggers txbox_v5) != 1 ]]; then
  say "expected no trigger on txbox.outbox and V2's on txbox_v5.outbox: found $(triggers txbox) and $(triggers txbox_v5)"
  exit 1
fi

commit=$(git rev-parse --short HEAD)
changed=$(git status --porcelain -- migrations outbox core | awk '{print $2}' | paste -sd, -)
[[ -n $changed ]] && commit+=" (with uncommitted changes in $changed)"
say "PostgreSQL $(psql "$TXBOX_TEST_PG" -qAtX -c 'SHOW fsync'), commit $commit"
build-bench/bench/writer_bench "$TXBOX_TEST_PG" --v6 txbox --v5 txbox_v5 \
  --admin "$TXBOX_TEST_PG_ADMIN" --commit "$commit" "$@" 2> >(tee "$out/writers.log" >&2) \
  | tee "$out/writers.md"
say "done: $out/writers.md"
