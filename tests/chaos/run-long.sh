#!/usr/bin/env bash
# The long chaos run of issue 6: 1,000,000 messages and 200 faults against throwaway servers
# of its own (tests/chaos/chaos.cpp says what it injects and what it checks). Builds
# txbox_chaos, runs it and keeps its output with the seed and the date:
#   tests/chaos/run-long.sh [txbox_chaos options...]      e.g. --seed 42 to replay a schedule,
#                                                         --exactly-once for the relays' EOS
#                                                         mode, --brokers 3 for the cluster
# The options go after the defaults, so they win over them (--messages N too).
# Environment: BUILD_DIR (default build-chaos), MESSAGES (1000000), FAULTS (200),
# WRITE_SECONDS (1500: the writers' pace, about 670 messages/s; the faults fall within it),
# JOBS (2). On 2 cores the default run takes about 30 minutes. The output goes to
# $BUILD_DIR/chaos-long/run-DATE.txt; the logs of every process to $BUILD_DIR/chaos-long/run/logs.
# Exit status: txbox_chaos's (0 pass, 1 a violation, 3 the servers or the setup failed).
# Needs what scripts/install-deps.sh installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-chaos}
messages=${MESSAGES:-1000000}
faults=${FAULTS:-200}
write_seconds=${WRITE_SECONDS:-1500}

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "${JOBS:-2}" --target txbox_chaos
out=$build/chaos-long
mkdir -p "$out"
log=$out/run-$(date -u +%Y%m%dT%H%M%SZ).txt
echo "[chaos-long] $messages messages, $faults faults; output in $log" >&2
set +e
"$build/tests/chaos/txbox_chaos" --messages "$messages" --faults "$faults" \
  --write-seconds "$write_seconds" --drain-timeout 3600 --stall-timeout 300 \
  --dir "$out/run" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "[chaos-long] exit $rc; output in $log" >&2
exit "$rc"
