"""`clicktrail attribute` and `clicktrail report earnings` as a user runs them (subprocesses against the
real Redis and ClickHouse), and `attribute --every` stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks
from tests.integration.servehelp import settings_env

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
CLI = str(Path(sys.executable).with_name("clicktrail"))


def test_attribute_and_report(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys(settings.redis_prefix)
    now_ms = int(time.time() * 1000)
    click_id = ClickIds(settings.secret_bytes).new(now_ms - 60_000)

    async def seed():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], now_ms - 3_600_000)
        await deliver(
            r, keys, "m1", "w1", "order.created", "A-1", click_id, now_ms - 1_000, [("SKU-1", "", 123_456, 1)]
        )
        await r.aclose()

    asyncio.run(seed())
    insert_clicks(clickhouse, [(click_id, now_ms - 60_000, "alice", "m1", "shop.m1.example", 0, 0)])
    ingest_orders(settings.redis_url, keys, clickhouse)

    env = settings_env(settings)
    ran = subprocess.run([CLI, "attribute"], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "attributed 1 orders (credited 1)" in ran.stdout
    again = subprocess.run([CLI, "attribute"], env=env, capture_output=True, text=True, timeout=60)
    assert "appended 0 ledger rows" in again.stdout
    shown = subprocess.run([CLI, "report", "earnings"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    header = [
        "creator",
        "currency",
        "clicks",
        "orders",
        "pending",
        "approved",
        "reversed",
        "in_payout",
        "paid",
    ]
    assert lines[0].split() == header
    # 123456 × 8 % = 9876.48 → 9876 minor units
    assert lines[2].split() == ["alice", "EUR", "1", "1", "98.76", "0.00", "0.00", "0.00", "0.00"]
    top = subprocess.run(
        [CLI, "report", "links", "--merchant", "m1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert top.returncode == 0, top.stderr
    assert [line.split() for line in top.stdout.splitlines()[2:]] == [["codealice", "alice", "1", "0"]]


@pytest.mark.parametrize("workers", [1, 2])
def test_attribute_every_stops_on_sigterm(settings, clickhouse, redis_client, workers) -> None:
    """With workers (attribution/lanes.py) too: they ignore the signal, and the command ends them."""
    migrate(clickhouse, log=lambda *_: None)
    proc = subprocess.Popen(
        [CLI, "attribute", "--every", "1"],
        env=settings_env(settings) | {"CLICKTRAIL_ATTRIBUTION_WORKERS": str(workers)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("attributed 0 orders"), first + proc.stderr.read()
        tasks = Path(f"/proc/{proc.pid}/task").glob("*/children")  # any thread may have started one
        children = [c for task in tasks for c in task.read_text().split()]
        # the lanes' worker (and multiprocessing's resource tracker) beside the command, or nothing
        assert (len(children) >= workers) if workers > 1 else not children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        deadline = time.monotonic() + 5
        while (left := [c for c in children if Path(f"/proc/{c}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
    # the lock is released on the way out: another run can start at once
    assert not redis_client.exists(settings.redis_prefix + "attribution:lock")


def test_workers_end_when_the_command_is_killed(settings, clickhouse, redis_client) -> None:
    """SIGKILL leaves the command no chance to close its workers, and they ignore SIGTERM: each ends
    by itself once its parent has gone (attribution/lanes.py)."""
    migrate(clickhouse, log=lambda *_: None)
    proc = subprocess.Popen(
        [CLI, "attribute", "--every", "1"],
        env=settings_env(settings) | {"CLICKTRAIL_ATTRIBUTION_WORKERS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("attributed 0 orders"), first + proc.stderr.read()
        tasks = Path(f"/proc/{proc.pid}/task").glob("*/children")
        children = [c for task in tasks for c in task.read_text().split()]
        assert children
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (left := [c for c in children if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


def _alive(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (["--from", "0001-01-01"], 2, "outside 1970-01-01..2105-12-31"),
        (["--to", "9999-12-31"], 2, "outside"),
        (["--from", "2026-02-01", "--to", "2026-01-31"], 2, "before from"),
        (["--from", "2026-13-01"], 2, "not a calendar date"),
        (["--from", "2026-01-01xyz"], 2, "YYYY-MM-DD"),
        (["--from", "2026-01-01"], 1, "ClickHouse cannot be reached"),  # a valid range, ClickHouse down
    ],
)
def test_report_earnings_refuses_cleanly(settings, args: list[str], status: int, said: str) -> None:
    """Bad ranges are usage errors; ClickHouse down ends in one clear line (the driver itself still logs
    its connection attempt), never an uncaught exception."""
    from tests.conftest import free_port

    env = settings_env(settings)
    env["CLICKTRAIL_CLICKHOUSE_URL"] = f"clickhouse://default:@127.0.0.1:{free_port()}/clicktrail"
    shown = subprocess.run(
        [CLI, "report", "earnings", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == status, shown.stderr
    assert said in shown.stderr.strip().splitlines()[-1]
