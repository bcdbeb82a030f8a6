# shellcheck shell=bash
# What the test scripts (tests/examples, tests/install, tests/monitoring) share. Sourced, after
# `set -euo pipefail`, by:
#   . "$(dirname "$0")/../lib/script_support.sh"
#   support_init LABEL [ON_EXIT]
# then $work is the script's temp dir (fail shows the tails of its *.log), $pids the processes
# and $schema the txbox schema (once set) that the exit stops and drops.

# support_init LABEL [ON_EXIT]: $work a new temp dir, $pids and $schema empty; cleanup at exit,
# also on SIGHUP, SIGINT or SIGTERM (a ctest timeout, ^C); LABEL heads fail's messages.
support_init() {
  support_label=$1
  support_on_exit=${2:-}
  work=$(mktemp -d)
  pids=()
  schema=
  trap support_cleanup EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# support_cleanup: stops $pids (SIGTERM, then waits for each), drops $schema if set, runs the
# script's ON_EXIT, removes $work. Never fails.
support_cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $schema ]]; then sql -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
  if [[ -n $support_on_exit ]]; then "$support_on_exit" || true; fi
  rm -rf "$work"
}

# fail MESSAGE...: prints "LABEL: MESSAGE" and the last 20 lines of every $work/*.log, exits 1.
fail() {
  echo "$support_label: $*" >&2
  local f
  for f in "$work"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}

# wait_for WHAT SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after $seconds s waiting for $what"
    sleep 0.2
  done
}

# sql ARGS...: psql on the test database ($TXBOX_TEST_PG), quiet, unaligned, stops at an error.
sql() { psql "$TXBOX_TEST_PG" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# load_test_env: exports every variable of $TXBOX_TEST_ENV_FILE (the servers' endpoints).
load_test_env() {
  set -a
  # shellcheck disable=SC1090
  . "$TXBOX_TEST_ENV_FILE"
  set +a
}

# create_schema RENDER_SH: creates $schema from the migrations that RENDER_SH renders (run by
# bash: an installed render.sh has no execute bit).
create_schema() {
  bash "$1" "$schema" | PGOPTIONS='-c client_min_messages=warning' sql >/dev/null
}

# start_relay RELAY NAME [OPTION...]: the relay program RELAY, named NAME, on $schema and the
# test servers, in the background (output in $work/relay.log); $relay its pid, in $pids.
start_relay() {
  local program=$1 name=$2
  shift 2
  "$program" --database-url "$TXBOX_TEST_PG" --schema "$schema" --name "$name" \
    --kafka-bootstrap-servers "$TXBOX_TEST_KAFKA" "$@" >"$work/relay.log" 2>&1 &
  relay=$!
  pids+=("$relay")
}

# start_projector PROJECTOR SOURCE_DIR TOPIC [OPTION...]: examples/projector (the program
# PROJECTOR, SOURCE_DIR's projector.toml) on $schema, consumer TOPIC of the topic TOPIC, in the
# background (output in $work/projector.log); $projector its pid, in $pids.
start_projector() {
  local program=$1 src=$2 topic=$3
  shift 3
  "$program" --config "$src/examples/projector/projector.toml" "$@" \
    database.url="$TXBOX_TEST_PG" database.schema="$schema" consumer.name="$topic" \
    consumer.topics="$topic" kafka.bootstrap.servers="$TXBOX_TEST_KAFKA" \
    >"$work/projector.log" 2>&1 &
  projector=$!
  pids+=("$projector")
}

# outbox_empty: true when $schema.outbox has no row left (the relay published them all).
outbox_empty() { [[ $(sql -c "SELECT count(*) FROM $schema.outbox") == 0 ]]; }

# check_rdkafka_links WRITER CONSUMER OUTBOX: fails unless the program CONSUMER links
# librdkafka and the program WRITER, which uses OUTBOX (the outbox library) only, does not.
check_rdkafka_links() {
  # (ldd's output in a variable: grep -q on a pipe could fail it with SIGPIPE under pipefail,
  # and turn the first check into one that cannot fail)
  local writer_libs consumer_libs
  writer_libs=$(ldd "$1")
  consumer_libs=$(ldd "$2")
  if grep -q rdkafka <<<"$writer_libs"; then
    fail "$(basename "$1") links librdkafka: $3 must not pull it in"
  fi
  grep -q rdkafka <<<"$consumer_libs" || fail "$(basename "$2") does not link librdkafka"
}
