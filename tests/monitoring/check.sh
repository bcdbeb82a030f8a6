#!/usr/bin/env bash
# The monitoring files against the real thing: docs/prometheus/txbox.rules.yml passes
# `promtool check rules`; docs/grafana/txbox.json is what make_dashboard.py writes and its
# queries parse (promtool, as recording rules); and every metric either file names exists in
# the real output of a running txbox-relay (/metrics) and of a consumer
# (Consumer::metrics_text(), written by examples/projector --metrics-file) that have handled
# messages, in both delivery modes (at_least_once, exactly_once); and `promtool check metrics`
# accepts both outputs of each mode as Prometheus would scrape them.
#   tests/monitoring/check.sh SOURCE_DIR RELAY PROJECTOR   (TXBOX_TEST_ENV_FILE: the servers)
set -euo pipefail
src=$1
relay_bin=$2
projector_bin=$3
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
support_init "monitoring check"
rules=$src/docs/prometheus/txbox.rules.yml
dashboard=$src/docs/grafana/txbox.json

command -v promtool >/dev/null || fail "promtool not found (scripts/install-deps.sh installs prometheus)"
promtool check rules "$rules" >"$work/promtool.log" 2>&1 || fail "promtool check rules $rules failed"
python3 "$src/docs/grafana/make_dashboard.py" --check || fail "txbox.json is out of date"
# The dashboard's queries as recording rules, for promtool to parse.
python3 - "$dashboard" >"$work/dashboard.rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for i, p in enumerate(d["panels"]):
    for t in p.get("targets", []):
        print(f"      - record: txbox_dashboard_panel_{i}_{t['refId']}\n        expr: {json.dumps(t['expr'])}")
PY
promtool check rules "$work/dashboard.rules.yml" >"$work/promtool-dashboard.log" 2>&1 \
  || fail "a dashboard query does not parse"

# Real output, in both delivery modes: a relay and a consumer that have handled 3 messages.
# `promtool check metrics` lints each exposition as Prometheus would scrape it (a counter
# without _total, a _sum that is no summary or histogram, ...).
load_test_env
real_output() {  # real_output MODE [RELAY OPTION...]: $work/relay-MODE.txt, $work/inbox-MODE.txt
  local mode=$1
  shift
  local run=monitoring_${mode}_$$_$RANDOM
  schema=$run
  local topic=${run//_/-}
  create_schema "$src/migrations/render.sh"
  local i
  for i in 1 2 3; do
    sql -c "SELECT $schema.enqueue('$topic', 'k$i', convert_to('{\"order_id\": $i}', 'UTF8'), type => 'Other')" >/dev/null
  done
  # Below the kernel's ephemeral range (as scripts/servers.sh): a port in it may become the
  # local end of any client's connection before the relay binds it ("cannot listen").
  local port= p low
  low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for p in $(shuf -i 10000-$((low - 1)) -n 100); do
    if ! ss -Htan "sport = :$p" | grep -q .; then port=$p; break; fi
  done
  [[ -n $port ]] || fail "no free port"
  start_relay "$relay_bin" "$run" --http-listen "127.0.0.1:$port" "$@"
  relay_out=$work/relay-$mode.txt
  published() { curl -sf "http://127.0.0.1:$port/metrics" >"$relay_out" && grep -q '^txbox_relay_commit_to_ack_seconds_count 3$' "$relay_out"; }
  wait_for "the relay ($mode) to publish 3 messages" 90 published
  inbox_out=$work/inbox-$mode.txt
  start_projector "$projector_bin" "$src" "$topic" --metrics-file "$inbox_out"
  consumed() { [[ -f $inbox_out ]] && grep -q "^txbox_inbox_processed_total{.*} 3$" "$inbox_out" \
    && grep -q "^txbox_inbox_lag_messages{" "$inbox_out"; }
  wait_for "the consumer ($mode) to process 3 messages" 90 consumed
  local name
  for name in txbox_relay_fenced_rows_total txbox_relay_late_reports_total \
    txbox_relay_transaction_commit_seconds_bucket; do
    grep -q "^$name[{ ]" "$relay_out" || fail "the relay's /metrics ($mode) lacks $name"
  done
  promtool check metrics <"$relay_out" >"$work/promtool-relay-$mode.log" 2>&1 \
    || fail "promtool check metrics: the relay's /metrics ($mode) fails: $(cat "$work/promtool-relay-$mode.log")"
  promtool check metrics <"$inbox_out" >"$work/promtool-inbox-$mode.log" 2>&1 \
    || fail "promtool check metrics: the consumer's metrics ($mode) fail: $(cat "$work/promtool-inbox-$mode.log")"
  # Stop both before the next mode (the exit would stop them too) and drop the schema.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  PGOPTIONS="-c client_min_messages=warning" sql -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
  schema=
}
real_output at_least_once
real_output exactly_once --exactly-once
# The lint itself can fail: an exposition with a counter named like a summary's part is refused.
printf '# HELP txbox_bogus_seconds_sum x\n# TYPE txbox_bogus_seconds_sum counter\ntxbox_bogus_seconds_sum 1\n' \
  | promtool check metrics >/dev/null 2>&1 && fail "promtool check metrics accepts a bogus counter"

# Names in the output: sample names and the # TYPE lines (a labelled metric with no sample yet).
cat "$work"/relay-*.txt "$work"/inbox-*.txt | sed -nE 's/^# TYPE ([a-z_]+) .*/\1/p; s/^([a-z_]+)[{ ].*/\1/p' \
  | sort -u >"$work/exposed.txt"
[[ $(wc -l <"$work/exposed.txt") -gt 20 ]] || fail "too few metrics exposed: $(cat "$work/exposed.txt")"
missing() {  # missing FILE...: the txbox_* names in FILE that nothing exposes
  grep -ohE '\btxbox_[a-z_]+' "$@" | grep -v '^txbox_dashboard_' | sort -u | comm -23 - "$work/exposed.txt"
}
# The check itself can fail: a made-up name is reported.
echo "expr: rate(txbox_relay_no_such_metric_total[5m])" >"$work/bogus.yml"
[[ $(missing "$work/bogus.yml") == txbox_relay_no_such_metric_total ]] || fail "the name check is broken"
gone=$(missing "$rules" "$dashboard")
[[ -z $gone ]] || fail "metrics named in the rules or the dashboard that no component exposes: $gone"
n_rules=$(grep -ohE '\btxbox_[a-z_]+' "$rules" | sort -u | wc -l)
n_dash=$(grep -ohE '\btxbox_[a-z_]+' "$dashboard" | sort -u | wc -l)
echo "monitoring check: rules ($n_rules metrics) and dashboard ($n_dash metrics) parse, every" \
  "metric they name is exposed by the relay or the consumer, and promtool check metrics accepts" \
  "their real output in at_least_once and exactly_once"
