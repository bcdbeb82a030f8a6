#!/usr/bin/env bash
# Builds examples/order_service, examples/projector and examples/billing with the compiler and
# `pkg-config --cflags --libs txbox-outbox|txbox-inbox|"txbox-inbox txbox-outbox"` only (no
# CMake), warnings as errors, against an installed txbox, then runs order_service on the test
# database.
#   tests/install/pkgconfig.sh BUILD_DIR SOURCE_DIR          install BUILD_DIR into a temp prefix
#   tests/install/pkgconfig.sh --prefix PREFIX SOURCE_DIR    use an installed prefix (e.g. /usr)
# (TXBOX_TEST_ENV_FILE: the servers.)
set -euo pipefail
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
support_init "pkg-config check"

if [[ ${1:-} == --prefix ]]; then
  prefix=$2
  src=$3
else
  src=$2
  prefix=$work/prefix
  cmake --install "$1" --prefix "$prefix" >/dev/null
fi
pcdir=
for d in "$prefix"/lib/pkgconfig "$prefix"/lib/*/pkgconfig; do
  [[ -f $d/txbox-outbox.pc ]] && pcdir=$d
done
[[ -n $pcdir ]] || fail "no txbox-outbox.pc under $prefix/lib"
[[ -f $pcdir/txbox-inbox.pc ]] || fail "txbox-inbox.pc is not installed beside txbox-outbox.pc"
export PKG_CONFIG_PATH=$pcdir
version=$(sed -nE 's/^project\(txbox VERSION ([0-9.]+).*/\1/p' "$src/CMakeLists.txt")
[[ $(pkg-config --modversion txbox-outbox) == "$version" ]] || fail "txbox-outbox is not version $version"
# The flags point into the prefix the files were installed to (they are relocatable).
pkg-config --cflags txbox-outbox | grep -q -- "-I$prefix" \
  || fail "txbox-outbox's --cflags do not name $prefix: $(pkg-config --cflags txbox-outbox)"

build() {  # build EXAMPLE MODULES
  # shellcheck disable=SC2046
  c++ -std=c++20 -O1 -Wall -Wextra -Werror -o "$work/$1" "$src/examples/$1/main.cpp" \
    $(pkg-config --cflags --libs "$2") >"$work/build-$1.log" 2>&1 \
    || fail "examples/$1 does not build with pkg-config $2"
}
build order_service txbox-outbox
build projector txbox-inbox
build billing "txbox-inbox txbox-outbox"
check_rdkafka_links "$work/order_service" "$work/projector" txbox-outbox

load_test_env
schema=pkgconfig_check_$$_$RANDOM
create_schema "$src/migrations/render.sh"
"$work/order_service" --db "$TXBOX_TEST_PG" --orders 5 --customers 2 --writers 1 \
  --schema "$schema" --topic pkgconfig-check >"$work/order_service.log" 2>&1 \
  || fail "the pkg-config-built order_service failed"
[[ $(sql -c "SELECT count(*) FROM $schema.outbox") == 5 ]] || fail "order_service did not write 5 messages"
# The consumers need Kafka as well (install.examples runs the projector end to end): here they
# only have to start and answer (their usage, exit 2).
for consumer in projector billing; do
  status=0
  "$work/$consumer" --help >"$work/$consumer.log" 2>&1 || status=$?
  [[ $status == 2 ]] || fail "the pkg-config-built $consumer does not run: --help exited $status, want 2"
  grep -qi usage "$work/$consumer.log" || fail "the pkg-config-built $consumer does not run: no usage"
done
echo "pkg-config check: order_service, projector and billing built with pkg-config only against" \
  "$prefix; order_service wrote 5 messages"
