"""What the operators' files in deploy/ refer to: the PromQL of the Grafana dashboard and of the alert
rules, and the metric names in it (tests/unit/test_deploy.py, tests/integration/test_metric_names.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "clicktrail.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

_METRIC_RE = re.compile(r"\bclicktrail_[a-z0-9_]+\b")
# Grafana's own variables, replaced by a duration when the panel is drawn.
GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")


def dashboard_exprs() -> list[str]:
    model = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in model["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def referenced_metrics() -> dict[str, str]:
    """Every metric name the dashboard and the rules mention → where (the first place it appears)."""
    found: dict[str, str] = {}
    for expr in dashboard_exprs():
        for name in _METRIC_RE.findall(expr):
            found.setdefault(name, f"{DASHBOARD.name}: {expr}")
    for rule in alert_rules():
        for name in _METRIC_RE.findall(rule["expr"]):
            found.setdefault(name, f"{ALERTS.name}: {rule['alert']}")
    return found
