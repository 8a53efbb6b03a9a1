"""The attributor's outcomes reach Prometheus: a one-shot `clicktrail attribute` (as from cron) shows on the
server's /metrics afterwards, and `attribute --every --metrics-port` serves the same figures itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.conftest import free_port
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks
from tests.integration.servehelp import ServeProcess, settings_env

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
CLI = str(Path(sys.executable).with_name("clicktrail"))


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    return _parse(httpx.get(url, timeout=5).text)


def seed(settings, clickhouse) -> None:
    """One credited order and one whose click id is not ours."""
    keys = Keys(settings.redis_prefix)
    now_ms = int(time.time() * 1000)
    click_id = ClickIds(settings.secret_bytes).new(now_ms - 60_000)
    forged = ClickIds(b"another secret").new(now_ms - 60_000)

    async def orders():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], now_ms - 3_600_000)
        item = [("SKU-1", "", 10_000, 1)]
        await deliver(r, keys, "m1", "w1", "order.created", "A-1", click_id, now_ms - 1_000, item)
        await deliver(r, keys, "m1", "w2", "order.created", "A-2", forged, now_ms - 1_000, item)
        await r.aclose()

    asyncio.run(orders())
    insert_clicks(clickhouse, [(click_id, now_ms - 60_000, "alice", "m1", "shop.m1.example", 0, 0)])
    ingest_orders(settings.redis_url, keys, clickhouse)


def test_one_shot_runs_show_on_the_servers_metrics(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)
    seed(settings, clickhouse)
    env = settings_env(settings)
    before_s = time.time()
    ran = subprocess.run([CLI, "attribute"], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    redis_client.set(Keys(settings.redis_prefix).attribution_lock, "another-run")
    busy = subprocess.run([CLI, "attribute"], env=env, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 75, busy.stderr
    redis_client.delete(Keys(settings.redis_prefix).attribution_lock)

    server = ServeProcess(settings)
    try:
        got = scrape(server.url + "/metrics")
    finally:
        server.stop()
    assert got[("clicktrail_attributor_runs_total", (("result", "ok"),))] == 1
    assert got[("clicktrail_attributor_runs_total", (("result", "busy"),))] == 1
    assert got[("clicktrail_attributor_runs_total", (("result", "failed"),))] == 0
    assert got[("clicktrail_attributor_orders_total", (("outcome", "credited"),))] == 1
    assert got[("clicktrail_attributor_orders_total", (("outcome", "invalid_click_id"),))] == 1
    assert got[("clicktrail_attributor_ledger_rows_total", (("kind", "accrual"),))] == 1
    assert got[("clicktrail_attributor_ledger_rows_total", (("kind", "none"),))] == 1
    # the busy run is the last run; the successful one the last success
    last_success = got[("clicktrail_attributor_last_success_timestamp_seconds", ())]
    assert before_s - 1 <= last_success <= got[("clicktrail_attributor_last_run_timestamp_seconds", ())]
    assert got[("clicktrail_attributor_run_seconds_total", ())] > 0


def test_a_failed_run_is_counted(settings, clickhouse, redis_client) -> None:
    env = settings_env(settings)
    env["CLICKTRAIL_CLICKHOUSE_URL"] = f"clickhouse://default:@127.0.0.1:{free_port()}/clicktrail"
    ran = subprocess.run([CLI, "attribute"], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0
    stats = redis_client.hgetall(Keys(settings.redis_prefix).attribution_stats)
    assert stats[b"runs:failed"] == b"1"
    assert b"last_success_ms" not in stats


def test_every_serves_its_own_metrics(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "attribute", "--every", "1", "--metrics-port", str(port)],
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("attributed 0 orders")
        got = scrape(f"http://127.0.0.1:{port}/metrics")
        assert got[("clicktrail_attributor_runs_total", (("result", "ok"),))] >= 1
        assert got[("clicktrail_attributor_last_success_timestamp_seconds", ())] > time.time() - 60
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_a_running_server_picks_up_later_runs(settings, redis_client, monkeypatch) -> None:
    """The server re-reads the statistics in the background (every STATS_REFRESH_INTERVAL_S; shortened
    here), so a cron run shows without a restart."""
    import redirector.state
    from attribution import runstats
    from tests.integration.apphelp import running_app

    monkeypatch.setattr(redirector.state, "STATS_REFRESH_INTERVAL_S", 0.05)
    keys = Keys(settings.redis_prefix)
    runs = ("clicktrail_attributor_runs_total", (("result", "ok"),))

    async def scenario() -> tuple[float, float]:
        async with running_app(settings) as (_app, client):
            before = _parse((await client.get("/metrics")).text)[runs]
            r = Redis.from_url(settings.redis_url)
            await runstats.record(
                r, keys, "ok", started_ms=int(time.time() * 1000), duration_s=0.5, outcomes={"credited": 2}
            )
            await r.aclose()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                after = _parse((await client.get("/metrics")).text)
                if after[runs] == before + 1:
                    return before, after[("clicktrail_attributor_orders_total", (("outcome", "credited"),))]
                await asyncio.sleep(0.05)
            raise AssertionError("the server never showed the new run")

    assert asyncio.run(scenario()) == (0, 2)


def _parse(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
