"""The Grafana dashboard and the alert rules in deploy/: the dashboard is current with its generator and a
valid dashboard model, every query in it is valid PromQL (promtool), and every alert has unit tests that
see it fire and stay quiet. (Whether the metrics they name exist: tests/integration/test_metric_names.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deployfiles import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    GRAFANA_DURATIONS,
    ROOT,
    alert_rules,
    dashboard_exprs,
)

REGENERATE = ".venv/bin/python deploy/grafana/build.py > deploy/grafana/clicktrail.json"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package"
    return found


def test_dashboard_is_current_with_its_generator() -> None:
    built = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "grafana" / "build.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert DASHBOARD.read_text() == built.stdout, f"deploy/grafana/clicktrail.json is stale: {REGENERATE}"


def test_dashboard_model() -> None:
    model = json.loads(DASHBOARD.read_text())
    assert model["uid"] and model["title"] and isinstance(model["schemaVersion"], int)
    (variable,) = model["templating"]["list"]
    assert (variable["type"], variable["query"], variable["name"]) == (
        "datasource",
        "prometheus",
        "datasource",
    )
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"] and target["refId"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's duration variables filled in)."""
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for variable in GRAFANA_DURATIONS:
            expr = expr.replace(variable, "5m")
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_check_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS_TEST)]):
        ran = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=ALERTS.parent)
        assert ran.returncode == 0, ran.stdout + ran.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never seen firing in alerts_test.yml"
    assert names - quiet == set(), "alerts never seen quiet in alerts_test.yml"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


# A counter of things left out, lost or given up: each must page someone, not only sit on a graph.
LOSS_WORDS = ("dropped", "dead_letter", "lost", "lookup_errors")


def test_every_counter_of_dropped_or_lost_records_has_an_alert() -> None:
    documented = re.findall(
        r"^\| `(clicktrail_[a-z_]+)`", (ROOT / "docs" / "operations.md").read_text(), re.M
    )
    losses = {name for name in documented if any(word in name for word in LOSS_WORDS)}
    assert {"clicktrail_records_dropped_total", "clicktrail_attributor_dead_letters_total"} <= losses
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    assert {name for name in losses if name not in exprs} == set(), "counters of losses without an alert"
