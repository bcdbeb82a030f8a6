#!/usr/bin/env python3
"""Writes docs/grafana/txbox.json, the Grafana dashboard of txbox's relay and inbox metrics.

    python3 docs/grafana/make_dashboard.py            # rewrite txbox.json
    python3 docs/grafana/make_dashboard.py --check    # exit 1 if txbox.json is out of date

Import txbox.json in Grafana (Dashboards > Import) and pick the Prometheus data source.
tests/monitoring/check.sh checks that every metric it names exists in the real output.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(title, exprs, unit="short", kind="timeseries", description=""):
    """One panel; exprs: [(legend, PromQL)]."""
    return {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": l}
                    for i, (l, e) in enumerate(exprs)],
    }


def quantiles(metric, by=""):
    grouping = f"le{', ' + by if by else ''}"
    label = f"{{{{{by}}}}} " if by else ""
    return [(f"{label}p{q}", f"histogram_quantile(0.{q}, sum by ({grouping}) "
                             f"(rate({metric}_bucket[5m])))") for q in ("50", "90", "99")]


RELAY = [
    panel("Outbox backlog", [("rows", "max(txbox_outbox_backlog_rows)")],
          description="Rows waiting in the outbox (exact up to 100,000)."),
    panel("Oldest pending message", [("age", "max(txbox_outbox_oldest_pending_seconds)")], "s",
          description="Alert above 60 s: nothing publishes."),
    panel("Publish rate", [("{{topic}}", "sum by (topic) (rate(txbox_relay_published_total[5m]))")],
          "ops"),
    panel("Commit to Kafka ack", quantiles("txbox_relay_commit_to_ack_seconds"), "s",
          description="From the outbox insert to Kafka's acknowledgement."),
    panel("Outbox dead letters (1 h)", [("dead", "sum(increase(txbox_relay_dead_total[1h]))")],
          description="txboxctl outbox dead list"),
    panel("Delivery retries", [("{{instance}}", "rate(txbox_relay_failed_total[5m])")], "ops"),
    panel("Shards owned per relay", [("{{instance}}", "txbox_relay_shards_owned"),
                                     ("all relays", "sum(txbox_relay_shards_owned)")],
          description="All relays together must own 64."),
    panel("Lease changes", [("{{instance}}", "rate(txbox_relay_lease_changes_total[5m])")], "ops"),
    panel("Relays ready", [("{{instance}}", "txbox_relay_ready")]),
    panel("Database failures", [("{{instance}}",
                                 "increase(txbox_relay_database_failures_total[10m])")]),
    panel("Kafka: ISR below min.insync / weak topics",
          [("partitions below min ISR", "max(txbox_relay_partitions_below_min_isr)"),
           ("weak topics", "count(txbox_relay_topic_weak) or vector(0)"),
           ("held (strict durability)",
            "sum(rate(txbox_relay_durability_held_total[5m])) or vector(0)")]),
    panel("Standby guard (relay.wait_for_standbys)",
          [("{{instance}} held rows", "txbox_relay_standby_held_rows"),
           ("{{instance}} standbys flushed", "txbox_relay_standbys_flushed"),
           ("{{instance}} wait s/s", "rate(txbox_relay_standby_wait_seconds_total[5m])")]),
    panel("Exactly-once transactions",
          [("{{instance}} committed/s", "rate(txbox_relay_transactions_committed_total[5m])"),
           ("{{instance}} aborted/s", "rate(txbox_relay_transactions_aborted_total[5m])"),
           ("{{instance}} recovered rows (1 h)",
            "increase(txbox_relay_recovered_rows_total[1h])")], "ops"),
    panel("Exactly-once commit time and lanes",
          [("{{instance}} mean commit s",
            "rate(txbox_relay_transaction_commit_seconds_sum[5m]) / "
            "rate(txbox_relay_transaction_commit_seconds_count[5m])"),
           ("{{instance}} lanes", "txbox_relay_lanes_owned")]),
    panel("Producer queue and restarts",
          [("{{instance}} queue", "txbox_relay_producer_queue"),
           ("{{instance}} restarts", "increase(txbox_relay_producer_restarts_total[1h])")]),
]

INBOX = [
    panel("Consumer lag", [("{{consumer}}", "max by (consumer) (txbox_inbox_lag_messages)")],
          description="Messages behind the partitions' ends."),
    panel("Processed rate", [("{{consumer}}", "sum by (consumer) "
                                              "(rate(txbox_inbox_processed_total[5m]))"),
                             ("{{consumer}} duplicates", "sum by (consumer) "
                                                         "(rate(txbox_inbox_duplicates_total[5m]))")],
          "ops"),
    panel("Handler latency", quantiles("txbox_inbox_handler_seconds", "consumer"), "s"),
    panel("Handler failures", [("{{consumer}}", "sum by (consumer) "
                                                "(rate(txbox_inbox_handler_failures_total[5m]))")],
          "ops"),
    panel("Inbox dead letters (1 h)", [("{{consumer}}", "sum by (consumer) "
                                                        "(increase(txbox_inbox_dead_total[1h]))")],
          description="txboxctl inbox dead list --consumer ..."),
    panel("Consumers ready", [("{{consumer}}", "txbox_inbox_ready")]),
    panel("Rebalances, requeues, database retries",
          [("{{consumer}} rebalances", "increase(txbox_inbox_rebalances_total[1h])"),
           ("{{consumer}} requeued", "increase(txbox_inbox_requeued_total[1h])"),
           ("{{consumer}} db retries", "increase(txbox_inbox_database_retries_total[1h])")]),
]


def layout(rows):
    """Rows of 8-unit-wide panels, 3 per line, each row under a title."""
    panels, y, pid = [], 0, 1
    for title, row in rows:
        panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, p in enumerate(row):
            p = dict(p, id=pid, gridPos={"x": 8 * (i % 3), "y": y + 8 * (i // 3), "w": 8, "h": 8})
            panels.append(p)
            pid += 1
        y += 8 * ((len(row) + 2) // 3)
    return panels


def dashboard():
    return {
        "title": "txbox", "uid": "txbox", "tags": ["txbox", "outbox", "kafka", "postgresql"],
        "description": "txbox relays (outbox to Kafka) and inbox consumers. See docs/operations.md.",
        "schemaVersion": 38, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": layout([("Relays and outbox", RELAY), ("Inbox consumers", INBOX)]),
    }


def render():
    """JSON with one panel per line: valid, diffable, and short."""
    d = dashboard()
    panels = d.pop("panels")
    head = json.dumps(d, indent=2)[:-2]
    body = ",\n".join("    " + json.dumps(p, sort_keys=True) for p in panels)
    return f'{head},\n  "panels": [\n{body}\n  ]\n}}\n'


if __name__ == "__main__":
    out = HERE / "txbox.json"
    text = render()
    json.loads(text)
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            sys.exit(f"{out} is out of date: run python3 {pathlib.Path(__file__).name}")
    else:
        out.write_text(text)
