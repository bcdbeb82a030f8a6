#!/usr/bin/env bash
# Installs the build into a fresh prefix and builds examples/order_service, examples/projector
# and examples/billing (txbox::inbox and txbox::outbox in one program) against it with
# find_package(txbox), as a user would (warnings as errors). Then runs the first two end to end
# on the test servers, in a txbox schema, a topic and a consumer of their own: order_service
# places 25 orders, the installed txbox-relay publishes them, the projector applies each exactly
# once through txbox::inbox (tests/examples/billing.sh runs billing end to end).
#   tests/install/check.sh BUILD_DIR SOURCE_DIR     (TXBOX_TEST_ENV_FILE: the servers)
set -euo pipefail
build=$1
src=$2
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
support_init "install check"

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/cmake/txbox/txboxConfig.cmake include/txbox/outbox.hpp include/txbox/inbox.hpp \
  share/txbox/migrations/V1__create_txbox_schema.sql bin/txbox-relay; do
  test -f "$prefix/$f" || fail "$f is not installed"
done

for example in order_service projector billing; do
  cmake -S "$src/examples/$example" -B "$work/$example" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" \
    >"$work/cmake-$example.log" 2>&1 || fail "find_package(txbox) failed for $example"
  cmake --build "$work/$example" -j2 >"$work/build-$example.log" 2>&1 \
    || fail "$example does not build against the installed package"
done
# The writer links no librdkafka; the consumer gets it through txbox::inbox.
check_rdkafka_links "$work/order_service/order_service" "$work/projector/projector" txbox::outbox

load_test_env
db=$TXBOX_TEST_PG
run=install_check_$$_$RANDOM
schema=$run
topic=${run//_/-}
consumer=$topic
create_schema "$prefix/share/txbox/migrations/render.sh"

"$work/order_service/order_service" --db "$db" --orders 25 --customers 5 --writers 2 \
  --schema "$schema" --topic "$topic" | tee "$work/order_service.log"
grep -q "25 orders placed" "$work/order_service.log" || fail "order_service did not place 25 orders"

start_relay "$prefix/bin/txbox-relay" "$run"
wait_for "the relay to publish the outbox" 60 outbox_empty

# Started once the relay has created the topic, so it is assigned its partition at once.
start_projector "$work/projector/projector" "$src" "$topic"
applied() {
  [[ $(sql -c "SELECT count(*) FROM $schema.inbox i JOIN shop_view.applied a USING (message_id)
               WHERE i.consumer = '$consumer'") -ge 25 ]]
}
wait_for "the projector to apply 25 orders" 60 applied
kill -TERM "$projector"
wait "$projector" || fail "the projector exited with status $? on SIGTERM"
pids=("$relay")
grep -q "25 processed, 0 duplicates skipped, 0 dead" "$work/projector.log" \
  || fail "the projector's counts are wrong"
read -r runs distinct < <(sql -F ' ' -c "SELECT count(*), count(DISTINCT a.message_id)
  FROM shop_view.applied a JOIN $schema.inbox i USING (message_id) WHERE i.consumer = '$consumer'")
[[ $runs == 25 && $distinct == 25 ]] || fail "applied $runs times for $distinct messages"
echo "install check: both examples built against the installed package; 25 orders placed," \
  "published by the installed relay and applied once each by the projector"
