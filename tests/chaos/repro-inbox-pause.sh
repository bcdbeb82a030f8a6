#!/usr/bin/env bash
# Reproduces the txbox::inbox bug the chaos driver found: a partition that the consumer paused
# (here: the retry backoff after a handler failure) stays paused inside librdkafka when it is
# revoked and assigned again to the same consumer, while the consumer's new state for it says
# "not paused"; nothing ever resumes it, so this process never consumes it again.
#   1. two poison messages on topic rp (1 partition); consumer A fails on the first and pauses
#      rp/0 for its retry backoff (15 s; max_attempts 2, so the next failure dead-letters it);
#   2. consumer B joins and leaves again: rp/0 is revoked from A and assigned back to A;
#   3. 45 s later both messages should be in txbox.inbox_dead and the offset at 2.
# Exit 0 when they are (fixed), 1 when the partition is stuck (the bug).
#   tests/chaos/repro-inbox-pause.sh [BUILD_DIR]     (default build-chaos; needs txbox-relay
#                                                     and txbox_chaos_projector built there)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build-chaos}" && pwd)
dir=$(mktemp -d /tmp/txbox-repro-pause.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true
  done
  "$root/scripts/servers.sh" stop "$dir/servers" >/dev/null 2>&1 || true
}
trap cleanup EXIT
env -u TXBOX_TEST_PG -u TXBOX_TEST_KAFKA "$root/scripts/servers.sh" start "$dir/servers" \
  >"$dir/servers.log" 2>&1 || { cat "$dir/servers.log" >&2; exit 3; }
# shellcheck disable=SC1091
source "$dir/servers/endpoints.env"
sql() { psql "$TXBOX_TEST_PG" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

sql "INSERT INTO txbox.outbox (message_id, topic, key, payload) VALUES
  (gen_random_uuid(), 'rp', 'k', convert_to('poison 1', 'UTF8')),
  (gen_random_uuid(), 'rp', 'k', convert_to('poison 2', 'UTF8'))"
"$build/relay/txbox-relay" --database-url "$TXBOX_TEST_PG" \
  --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" --name repro >"$dir/relay.log" 2>&1 &
relay=$!
pids+=("$relay")
for _ in $(seq 1 120); do [[ $(sql 'SELECT count(*) FROM txbox.outbox') == 0 ]] && break; sleep 0.5; done
kill -TERM "$relay"
wait "$relay" || true

consumer() {  # consumer NAME: starts a projector in the background, pid in $!
  CHAOS_PROCESS=$1 "$build/tests/chaos/txbox_chaos_projector" consumer.name=rp \
    consumer.topics=rp "database.url=$TXBOX_TEST_PG" "kafka.bootstrap.servers=$TXBOX_TEST_KAFKA" \
    kafka.session.timeout.ms=6000 kafka.partition.assignment.strategy=range \
    consumer.retry_backoff_min_ms=15000 consumer.retry_backoff_max_ms=15000 \
    consumer.max_attempts=2 >"$dir/$1.log" 2>&1 &
}
consumer A
pids+=("$!")
sleep 4  # A fails on 'poison 1' and pauses rp/0 for 15 s
consumer B
b=$!
pids+=("$b")
sleep 5  # the group rebalances: rp/0 is revoked from A
kill -TERM "$b"
wait "$b" || true  # B leaves: rp/0 is assigned to A again
sleep 45           # three times the backoff: A should have retried, dead-lettered both, moved on

dead=$(sql "SELECT count(*) FROM txbox.inbox_dead WHERE consumer = 'rp'")
offset=$(sql "SELECT coalesce(max(next_offset), 0) FROM txbox.inbox_offsets WHERE consumer = 'rp'")
echo "inbox_dead rows: $dead (expected 2); stored next offset: $offset (expected 2)"
echo "--- consumer A"
grep -v '^$' "$dir/A.log"
if [[ $dead == 2 && $offset == 2 ]]; then
  echo "ok: the partition was resumed after the re-assignment"
  exit 0
fi
echo "BUG: rp/0 stayed paused after it was revoked and assigned again to the same consumer"
exit 1
