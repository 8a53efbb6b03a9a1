"""Every metric the Grafana dashboard and the alert rules name is exported by a real process: the server's
/metrics after redirects and a webhook, the ingester's `--metrics-port` after it stored them, and the
attributor's `--metrics-port`. A renamed or removed metric fails here, not on an operator's blank panel."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.migrate import migrate
from tests.conftest import free_port
from tests.deployfiles import referenced_metrics
from tests.integration.servehelp import ServeProcess, settings_env

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
CLI = str(Path(sys.executable).with_name("clicktrail"))
OPERATIONS_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

# The sample names each type of family exposes (a labelled family may have no sample yet).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "untyped": ("",),
}


def documented_name(family) -> str:
    """The name docs/operations.md lists a family under: counters with `_total`, others as they are."""
    return family.name + "_total" if family.type == "counter" else family.name


def exported(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def scrape(url: str, want: str, timeout_s: float = 20) -> str:
    """The exposition at `url` once it contains `want` (gauges set by background tasks come a moment
    after start-up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(url, timeout=5).text
            if want in text or time.monotonic() > deadline:
                return text
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing to scrape at {url}")
        time.sleep(0.2)


@contextlib.contextmanager
def running(args: list[str], env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_named_metric_is_exported(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)
    env = settings_env(settings)
    server = ServeProcess(settings)
    try:
        admin = {"authorization": f"Bearer {settings.admin_token}"}
        link = httpx.post(
            server.url + "/api/links",
            headers=admin,
            json={"url": "https://shop.example/p/1", "creator_id": "a"},
        ).json()
        for _ in range(5):
            assert httpx.get(f"{server.url}/{link['code']}").status_code == 302
        assert httpx.post(server.url + "/webhooks/orders/nobody", content=b"{}").status_code == 404
        ingest_port, attribute_port, deliver_port = free_port(), free_port(), free_port()
        with (
            running(["ingest", "--metrics-port", str(ingest_port)], env),
            running(["attribute", "--every", "60", "--metrics-port", str(attribute_port)], env),
            running(["deliver", "--metrics-port", str(deliver_port)], env),
        ):
            texts = [
                scrape(
                    f"http://127.0.0.1:{ingest_port}/metrics",
                    'clicktrail_stream_records_total{outcome="inserted"',
                ),
                scrape(f"http://127.0.0.1:{attribute_port}/metrics", 'result="ok"} 1.0'),
                scrape(f"http://127.0.0.1:{deliver_port}/metrics", "clicktrail_events_delivered_total"),
            ]
        texts.append(scrape(server.url + "/metrics", "clicktrail_stream_lag_seconds{"))
    finally:
        server.stop()
    names = set().union(*(exported(text) for text in texts))
    missing = {name: where for name, where in referenced_metrics().items() if name not in names}
    assert not missing, f"named in deploy/ but exported by no process: {missing}"
    # ... and the operations guide lists every metric these processes export.
    guide = OPERATIONS_GUIDE.read_text()
    undocumented = sorted(
        {
            documented_name(f)
            for text in texts
            for f in text_string_to_metric_families(text)
            if not f.name.endswith("_created")  # prometheus_client's creation times, not ours
        }
        - set(re.findall(r"`(clicktrail_[a-z0-9_]+)`", guide))
    )
    assert not undocumented, f"exported but missing from docs/operations.md, Metrics: {undocumented}"
