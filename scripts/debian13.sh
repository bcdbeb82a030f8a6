#!/usr/bin/env bash
# The Debian 13 (trixie) job: txbox built and tested with Debian 13's toolchain (g++ 14,
# libpqxx 7.10, librdkafka 2.8, PostgreSQL 17) in a chroot, on a Debian 12 machine, as root.
#
#   scripts/debian13.sh
#
# 1. root: a trixie root made with debootstrap from Debian's mirror, cached in
#    ${TXBOX_CACHE_DIR:-~/.cache/txbox}/debian13/root. The file packages beside it records the
#    package list it was made with: a package added to the list below is apt-installed into the
#    cached root on the next run (a removed one stays installed). Delete the directory to
#    start afresh.
# 2. build: in a private mount and PID namespace (unshare), the root gets /proc, /dev, /dev/pts,
#    /dev/shm, /sys (read-only), a tmpfs on /tmp, this source tree read-only on /src, the
#    build directory on /build (default build-debian13 in this tree) and the Kafka broker's jar
#    cache (~/.cache/txbox/kafka-*, read-only: no Maven inside). cmake with -DTXBOX_WERROR=ON,
#    only the targets below.
# 3. tests: the unit tests, then the integration tests of the outbox, the relay (both delivery
#    modes), the inbox, txboxctl and the SQL enqueue, chosen by test executable (every test
#    those executables hold, so new tests join by themselves), on servers the harness starts
#    inside the root (scripts/servers.sh: PostgreSQL 17 from the root, the Kafka broker on the
#    root's Java; loopback is shared with the machine).
# On exit, failure or a signal, every process left in the namespace is killed and every mount
# released (the namespace's mounts are never visible outside it).
#
# Environment: TXBOX_CACHE_DIR (as scripts/servers.sh), TXBOX_DEBIAN13_MIRROR (default
# http://deb.debian.org/debian), TXBOX_DEBIAN13_BUILD_DIR (default build-debian13 in this tree),
# TXBOX_TEST_KAFKA_VERSION (passed to the harness inside).
set -euo pipefail

log() { printf '[debian13] %s\n' "$*" >&2; }
die() { printf '[debian13] error: %s\n' "$*" >&2; exit 1; }

# Test executables whose tests the job runs (tests/CMakeLists.txt).
unit_execs=(txbox_unit_tests)
integration_execs=(
  txbox_integration_tests    # outbox, migrations, relay (at_least_once), txboxctl, failures
  txbox_relay_failure_tests  # the relay's failure policy and shutdown
  txbox_relay_store_tests    # the relay's outbox store and leases (both modes)
  txbox_relay_eos_tests      # relay.delivery = exactly_once, at_least_once as the control
  txbox_inbox_tests          # txbox::inbox
  txbox_inbox_failure_tests  # the inbox under database failures, signals, held messages
  txbox_sql_enqueue_tests    # the SQL enqueue (migrations/V4)
)

# --- inside the root (run by the namespace's process; / is the Debian 13 root) -------------
if [[ ${1:-} == __chroot ]]; then
  cd /src
  summary=/build/debian13-summary.txt
  : > "$summary"
  phase() { printf '%-28s %s\n' "$1" "$2" | tee -a "$summary" >&2; }
  phase "compiler" "$(g++ --version | head -1)"
  phase "libpqxx / librdkafka" \
    "$(pkg-config --modversion libpqxx) / $(pkg-config --modversion rdkafka)"
  phase "PostgreSQL server" "$("$TXBOX_TEST_PG_BINDIR/postgres" --version)"
  phase "Java" "$(java -version 2>&1 | head -1)"
  jobs=$(nproc)

  t0=$(date +%s)
  log "configuring in /build (-DTXBOX_WERROR=ON)"
  # ccache's cache stays in the cached root (/root/.ccache): /src is the same path every run.
  export CCACHE_DIR=/root/.ccache CCACHE_MAXSIZE=2G
  ccache -z >/dev/null
  cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTXBOX_WERROR=ON \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/build/cmake.log 2>&1 \
    || die "cmake configure failed: $(tail -20 /build/cmake.log)"
  log "building: ${unit_execs[*]} ${integration_execs[*]}"
  cmake --build /build -j "$jobs" --target "${unit_execs[@]}" "${integration_execs[@]}" \
    || die "the build failed with Debian 13's toolchain (output above)"
  t1=$(date +%s)
  phase "build" "$((t1 - t0)) s; ccache $(ccache -s | awk '/^ *Hits:/ {print $2 "/" $4 " hits"; exit}')"

  # tests FILE EXEC...: writes the names of the ctest tests whose command is one of EXECs.
  tests_of() {
    local out=$1 pattern
    shift
    pattern="/($(IFS='|'; echo "$*"))\$"
    ctest --test-dir /build --show-only=json-v1 >/build/ctest-list.json \
      || die "ctest could not list the tests in /build"
    jq -r --arg p "$pattern" \
      '.tests[] | select((.command // [""])[0] | test($p)) | .name' \
      /build/ctest-list.json > "$out"
    [[ -s $out ]] || die "no ctest test runs any of: $* (were they built?)"
  }

  # run_tests NAME LOG FILE: runs the tests listed in FILE, adds the counts to the summary.
  failed=0
  run_tests() {
    local name=$1 logf=$2 list=$3 t rc=0 counts
    t=$(date +%s)
    log "$name: $(wc -l < "$list") tests (list in $list)"
    ctest --test-dir /build --tests-from-file "$list" -j "$jobs" --output-on-failure \
      --timeout 600 2>&1 | tee "$logf" || rc=$?
    counts=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$logf" | tail -1)
    [[ -n $counts ]] || counts="no ctest summary (exit $rc): see $logf"
    phase "$name" "$(($(date +%s) - t)) s; $counts"
    if ((rc != 0)); then
      failed=1
      grep -A200 'The following tests FAILED' "$logf" | sed 's/^/  /' | tee -a "$summary" >&2
    fi
  }

  tests_of /build/debian13-unit.txt "${unit_execs[@]}"
  tests_of /build/debian13-integration.txt "${integration_execs[@]}"
  run_tests "unit tests" /build/debian13-unit.log /build/debian13-unit.txt
  run_tests "integration tests" /build/debian13-integration.log /build/debian13-integration.txt
  ((failed == 0)) || die "tests failed in the Debian 13 root (see above; logs in the build directory)"
  exit 0
fi

# --- the private namespace (PID 1 of a new PID namespace, its own mount namespace) ---------
if [[ ${1:-} == __ns ]]; then
  [[ $$ == 1 ]] || die "internal: __ns must run as PID 1 of its own PID namespace"
  root=${DEB13_ROOT:?} src=${DEB13_SRC:?} build=${DEB13_BUILD:?} cache=${DEB13_CACHE:?}
  mounted=()
  # shellcheck disable=SC2317  # run by the EXIT trap
  cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # Whatever still runs in the namespace is ours (servers, tests): PID 1 signals them all.
    kill -KILL -1 2>/dev/null || true
    for i in $(seq 1 30); do
      kill -0 -1 2>/dev/null || break  # none left (zombies count: give them 3 s at most)
      wait 2>/dev/null || true
      sleep 0.1
    done
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
      umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" \
        || log "could not unmount ${mounted[i]} (released with the namespace)"
    done
    exit "$rc"
  }
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  mnt() {  # mnt TARGET MOUNT-ARGS...: mount, remembered for cleanup
    local target=$1
    shift
    mkdir -p "$target"
    mount "$@" "$target" || die "mount $* $target failed (is this a container without CAP_SYS_ADMIN?)"
    mounted+=("$target")
  }
  mnt "$root/proc" -t proc proc
  mnt "$root/sys" -t sysfs -o ro,nosuid,nodev,noexec sysfs
  mnt "$root/dev" --bind /dev
  mnt "$root/dev/pts" --bind /dev/pts
  mnt "$root/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm
  mnt "$root/tmp" -t tmpfs -o mode=1777,nosuid,nodev,size=8g tmp
  mnt "$root/src" --bind "$src"
  mount -o remount,bind,ro "$root/src" || die "could not make $root/src read-only"
  mnt "$root/build" --bind "$build"
  for jars in "$cache"/kafka-*/; do
    [[ -f $jars/.complete ]] || continue
    jars=${jars%/}
    mnt "$root/root/.cache/txbox/${jars##*/}" --bind "$jars"
    mount -o remount,bind,ro "$root/root/.cache/txbox/${jars##*/}" \
      || die "could not make the jar cache read-only"
  done
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      DEBIAN_FRONTEND=noninteractive TXBOX_TEST_PG_BINDIR=/usr/lib/postgresql/17/bin \
      ${TXBOX_TEST_KAFKA_VERSION:+TXBOX_TEST_KAFKA_VERSION=$TXBOX_TEST_KAFKA_VERSION} "$@" &
    wait $!  # in the background: a TERM is handled at once, not after the command
  }
  if [[ -n ${DEB13_ADD:-} ]]; then
    log "apt-installing into the cached root: $DEB13_ADD"
    # shellcheck disable=SC2086  # a list of package names
    in_root sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $DEB13_ADD" \
      || die "apt-get install of $DEB13_ADD in $root failed (is the mirror reachable?)"
    printf '%s\n' "$DEB13_WANT" > "$root/../packages"
  fi
  in_root /bin/bash /src/scripts/debian13.sh __chroot
  exit 0
fi

# --- the machine (Debian 12, root) -----------------------------------------------------------
[[ $# == 0 ]] || die "usage: $0 (no arguments; see the comment at its top)"
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, mounts): run sudo $0"
for tool in debootstrap unshare chroot findmnt flock jq; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done
src=$(cd "$(dirname "$0")/.." && pwd)
cache=${TXBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/txbox}
base=$cache/debian13
root=$base/root
mirror=${TXBOX_DEBIAN13_MIRROR:-http://deb.debian.org/debian}
build=${TXBOX_DEBIAN13_BUILD_DIR:-$src/build-debian13}
packages=(
  g++ cmake ninja-build pkg-config make
  libpqxx-dev libpq-dev librdkafka-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev libtoml11-dev libcpp-httplib-dev googletest libgtest-dev librapidcheck-dev
  postgresql-17 postgresql-client-17 ca-certificates
  openjdk-21-jre-headless iproute2 procps jq  # the harness's broker, ss, ps; the test lists
  ccache
)
want=$(printf '%s\n' "${packages[@]}" "suite trixie" | sort -u)
mkdir -p "$base" "$build"
exec 9>"$base/lock"
flock -n 9 || die "another scripts/debian13.sh uses $base (lock $base/lock): wait for it"

# Unmounts whatever is mounted at or below $1 in this namespace (a debootstrap stopped midway
# leaves its /proc and /sys mounted in the target), deepest first.
umount_under() {
  local m
  findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || die "could not unmount $m: unmount it by hand"
  done
}
# Removes directory $1 on this file system only, after unmounting anything below it.
remove_tree() {
  umount_under "$1"
  [[ -z $(findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d) == 1') ]] \
    || die "$1 still has mounts below it: unmount them and run again"
  rm -rf --one-file-system "$1"
}

child=
on_signal() {  # on_signal EXIT-CODE
  log "interrupted: stopping"
  if [[ -n $child ]]; then
    # unshare --fork blocks TERM in itself: signal its child, the namespace's PID 1.
    pkill -TERM -P "$child" 2>/dev/null || true
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit "$1"
}
on_exit() {
  local rc=$?
  umount_under "$base/root.new" || true
  if [[ -n $(findmnt -rn -o TARGET | grep -F "$base/" || true) ]]; then
    log "mounts left below $base: $(findmnt -rn -o TARGET | grep -F "$base/" | tr '\n' ' ')"
    rc=1
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
# run_child LOG CMD...: runs CMD in the background, output to LOG (- for ours), and waits for
# it: in the background, a signal is handled at once (not after CMD), and its message is ours.
run_child() {
  local out=$1
  shift
  if [[ $out == - ]]; then "$@" & else "$@" >"$out" 2>&1 & fi
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=
  return "$rc"
}

T0=$(date +%s)
add=
if [[ -x $root/usr/bin/g++ ]] && grep -qx 'suite trixie' "$base/packages" 2>/dev/null; then
  add=$(comm -13 "$base/packages" <(printf '%s\n' "$want") | paste -sd ' ')  # never a suite
  gone=$(comm -23 "$base/packages" <(printf '%s\n' "$want") | paste -sd ' ')
  log "reusing the Debian 13 root in $root (made $(cat "$base/made" 2>/dev/null || echo '?'))"
  [[ -z $gone ]] || log "no longer in the package list, left installed: $gone"
  root_how=reused
else
  [[ ! -e $root ]] || { log "removing $root (incomplete, or made for another suite)"; remove_tree "$root"; }
  [[ ! -e $base/root.new ]] || remove_tree "$base/root.new"
  rm -f "$base/packages"
  log "making a Debian 13 root with debootstrap from $mirror (log: $base/debootstrap.log)"
  run_child "$base/debootstrap.log" debootstrap --variant=minbase \
    --include="$(IFS=,; echo "${packages[*]}")" trixie "$base/root.new" "$mirror" \
    || die "debootstrap failed: $(tail -5 "$base/debootstrap.log"); full log: $base/debootstrap.log"
  umount_under "$base/root.new"
  mv "$base/root.new" "$root"
  printf '%s\n' "$want" > "$base/packages"
  date -u '+%F %H:%M UTC' > "$base/made"
  root_how="made with debootstrap"
fi
mkdir -p "$root/src" "$root/build"
T1=$(date +%s)
log "root: $root_how in $((T1 - T0)) s"

"$src/scripts/servers.sh" kafka-jars  # the broker's jars, resolved here (no Maven inside)
log "entering the root: build in $build, sources read-only on /src"
rc=0
DEB13_ROOT=$root DEB13_SRC=$src DEB13_BUILD=$(cd "$build" && pwd) DEB13_CACHE=$cache \
  DEB13_ADD=$add DEB13_WANT=$want \
  run_child - unshare --mount --pid --fork --propagation private --kill-child=TERM \
  "$src/scripts/debian13.sh" __ns || rc=$?
T2=$(date +%s)
{
  echo "== Debian 13 job ($(date -u '+%F %H:%M UTC'), $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  printf '%-28s %s\n' "root" "$((T1 - T0)) s ($root_how${add:+; added $add})"
  [[ ! -f $build/debian13-summary.txt ]] || cat "$build/debian13-summary.txt"
  printf '%-28s %s\n' "total" "$((T2 - T0)) s"
} >&2
((rc == 0)) || die "the Debian 13 job failed (exit $rc)"
log "ok"
