"""Builds the Grafana dashboard `clicktrail.json` from the panel list below (one place to add a panel):

    .venv/bin/python deploy/grafana/build.py > deploy/grafana/clicktrail.json

tests/unit/test_deploy.py fails when the checked-in JSON differs from this output, and checks that every
metric a panel names is exported (tests/integration/test_metric_names.py). The Prometheus datasource is a
dashboard variable (`datasource`), so the file imports into any Grafana as is.

Series exported by several processes (the server and the ingester both export the stream lag; every
server exports the attributor's statistics, read from Redis) are combined with max, per-process counters
(redirects, clicks, webhooks) with sum."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
PANEL_HEIGHT = 8
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    width: int = 8
    kind: str = "timeseries"
    description: str = ""


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Redirects",
        [
            Panel(
                "Redirects by status",
                ((f"sum by (status) (rate(clicktrail_redirects_total[{RATE}]))", "{{status}}"),),
                unit="reqps",
            ),
            Panel(
                "Redirect latency",
                tuple(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(clicktrail_redirect_latency_seconds_bucket[{RATE}])))",
                        f"p{label}",
                    )
                    for q, label in (("0.5", "50"), ("0.99", "99"), ("0.999", "99.9"))
                ),
                unit="s",
                description="Request to response start, from the server's histogram (buckets from 100 µs).",
            ),
            Panel(
                "Clicks by outcome",
                ((f"sum by (outcome) (rate(clicktrail_clicks_total[{RATE}]))", "{{outcome}}"),),
                unit="ops",
                description="committed: in Redis; spooled: on a worker's local disk; replayed: spool to "
                "Redis; lost: neither could take it (the viewer was still redirected).",
            ),
            Panel(
                "Workers spooling",
                (
                    ("sum(clicktrail_workers) - sum(clicktrail_recorder_live)", "spooling"),
                    ("sum(clicktrail_workers)", "workers"),
                ),
                description="Workers that cannot write to Redis record clicks into their local spool.",
            ),
            Panel(
                "Recorder Redis failures",
                ((f"sum by (error) (rate(clicktrail_recorder_redis_failures_total[{RATE}]))", "{{error}}"),),
                unit="ops",
            ),
            Panel(
                "Link cache hit ratio",
                (
                    (
                        f'sum(rate(clicktrail_link_cache_total{{result="hit"}}[{RATE}])) '
                        f"/ sum(rate(clicktrail_link_cache_total[{RATE}]))",
                        "hit ratio",
                    ),
                ),
                unit="percentunit",
            ),
        ],
    ),
    (
        "Ingestion (Redis to ClickHouse)",
        [
            Panel(
                "Stream lag (age of the oldest entry not stored)",
                (("max by (stream) (clicktrail_stream_lag_seconds)", "{{stream}}"),),
                unit="s",
            ),
            Panel(
                "Stream lag (entries)",
                (("max by (stream) (clicktrail_stream_lag_entries)", "{{stream}}"),),
            ),
            Panel(
                "Ingest rate",
                (
                    (
                        f"sum by (stream, outcome) (rate(clicktrail_stream_records_total[{RATE}]))",
                        "{{stream}} {{outcome}}",
                    ),
                ),
                unit="ops",
                description="Records stored in ClickHouse (inserted) or found already stored on redelivery.",
            ),
            Panel(
                "ClickHouse insert time p99",
                (
                    (
                        "histogram_quantile(0.99, sum by (stream, le) "
                        f"(rate(clicktrail_stream_insert_seconds_bucket[{RATE}])))",
                        "{{stream}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Dead-lettered entries (1 h)",
                (
                    (
                        "sum by (stream, reason) (increase(clicktrail_stream_dead_letters_total[1h]))",
                        "{{stream}} {{reason}}",
                    ),
                ),
            ),
            Panel(
                "Ingest errors",
                (
                    (
                        f"sum by (stream, kind) (rate(clicktrail_stream_errors_total[{RATE}]))",
                        "{{stream}} {{kind}}",
                    ),
                ),
                unit="ops",
            ),
        ],
    ),
    (
        "Webhooks and attribution",
        [
            Panel(
                "Order webhooks by result",
                ((f"sum by (result) (rate(clicktrail_webhooks_total[{RATE}]))", "{{result}}"),),
                unit="reqps",
                description="accepted, duplicate, or the refusal reason (bad_signature, malformed, ...).",
            ),
            Panel(
                "Attributor runs (1 h)",
                (("max by (result) (increase(clicktrail_attributor_runs_total[1h]))", "{{result}}"),),
            ),
            Panel(
                "Since the last successful attributor run",
                (("time() - max(clicktrail_attributor_last_success_timestamp_seconds)", "since"),),
                unit="s",
                kind="stat",
            ),
            Panel(
                "Attributed orders by outcome (1 h)",
                (("max by (outcome) (increase(clicktrail_attributor_orders_total[1h]))", "{{outcome}}"),),
                description="credited, or the reason an order earns nothing (no_click, bot, expired, ...).",
            ),
            Panel(
                "Ledger rows by kind (1 h)",
                (("max by (kind) (increase(clicktrail_attributor_ledger_rows_total[1h]))", "{{kind}}"),),
            ),
            Panel(
                "Attributor run duration",
                (("max(clicktrail_attributor_last_run_duration_seconds)", "last run"),),
                unit="s",
            ),
        ],
    ),
    (
        "Outgoing event deliveries",
        [
            Panel(
                "Deliveries: delivered, retried, dead-lettered",
                (
                    (f"sum(rate(clicktrail_events_delivered_total[{RATE}]))", "delivered"),
                    (f"sum by (reason) (rate(clicktrail_event_retries_total[{RATE}]))", "retry {{reason}}"),
                    (
                        f"sum by (reason) (rate(clicktrail_events_dead_lettered_total[{RATE}]))",
                        "dead letter {{reason}}",
                    ),
                ),
                unit="ops",
                width=12,
            ),
            Panel(
                "Delivery latency",
                (
                    (
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(clicktrail_event_delivery_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ),
                unit="s",
                width=12,
            ),
        ],
    ),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    body: dict = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        }
    else:
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    return body


def dashboard() -> dict:
    panels, panel_id, y = [], 1, 0
    for title, row in ROWS:
        panels.append(
            {"id": panel_id, "type": "row", "title": title, "collapsed": False, "panels": []}
            | {"gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y}}
        )
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in row:
            if x + panel.width > GRID_COLUMNS:
                x, y = 0, y + PANEL_HEIGHT
            panels.append(panel_json(panel, panel_id, x, y))
            panel_id, x = panel_id + 1, x + panel.width
        y += PANEL_HEIGHT
    return {
        "title": "clicktrail",
        "uid": "clicktrail",
        "description": "Redirects, click durability, ingestion, webhooks, attribution and event delivery.",
        "tags": ["clicktrail"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
