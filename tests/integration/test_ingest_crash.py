"""SIGKILL at each crash point of a real ingest process, then `clicktrail ingest --once`: still exactly N
clicks, exact rollups and unique flags. Plus random SIGKILLs of `clicktrail ingest` under a live producer."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import threading
import time

import pytest
import redis

from core.keys import INGEST_GROUP
from core.migrate import migrate
from tests.integration.crashhelp import CLI, CRASH_TUNING, ingest_env, kill_at
from tests.integration.test_ingest import HOUR_MS, assert_exact, fill, make_clicks

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]


@pytest.fixture
def env(settings, clickhouse) -> dict[str, str]:
    migrate(clickhouse, log=lambda _line: None)
    return ingest_env(settings, CRASH_TUNING)


@pytest.mark.parametrize("point", ["before_insert", "after_insert", "after_ack", "after_trim"])
def test_sigkill_at_each_point(point, env, redis_client, clickhouse, settings) -> None:
    from core.clickid import ClickIds
    from core.keys import Keys

    keys = Keys(settings.redis_prefix)
    clicks = make_clicks(ClickIds(settings.secret_bytes), 4_000, int(time.time() * 1000) - 2 * HOUR_MS, 1_500)
    fill(redis_client, keys, clicks)
    kill_at(env, point, 2, "crashy")
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] > 0 or point in (
        "after_ack",
        "after_trim",
    )
    # The same consumer name comes back: it takes its own pending entries at once.
    done = subprocess.run([CLI, "ingest", "--once", "--consumer", "crashy"], env=env, timeout=120)
    assert done.returncode == 0
    assert_exact(clickhouse, clicks)
    assert redis_client.xlen(keys.clicks) == 0


def wait_for_group(redis_client, stream: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ResponseError):  # no stream yet
            if any(
                g["name"] in (INGEST_GROUP, INGEST_GROUP.encode()) for g in redis_client.xinfo_groups(stream)
            ):
                return
        time.sleep(0.05)
    raise AssertionError(f"no ingester created its consumer group on {stream} within {timeout_s} s")


def test_random_sigkills_under_load(env, redis_client, clickhouse, settings) -> None:
    """A producer adds clicks while `clicktrail ingest` processes (new consumer name each time, so pending
    entries are claimed after the idle time) are killed at random moments."""
    from core.clickid import ClickIds
    from core.keys import Keys

    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)
    rng = random.Random(7)
    produced = []
    stop = threading.Event()

    def produce() -> None:
        start_ms = int(time.time() * 1000) - HOUR_MS
        while not stop.is_set():
            clicks = make_clicks(ids, 200, start_ms + len(produced) * 10)
            fill(redis_client, keys, clicks, per_entry=50)
            produced.extend(clicks)
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    left_pending = []
    try:
        for round_no in range(5):
            proc = subprocess.Popen([CLI, "ingest", "--consumer", f"r{round_no}"], env=env)
            # The random moment counts from a running ingester: on a loaded machine the first process can
            # take longer than the sleep just to start, and a kill before its consumer group exists tests
            # nothing (and leaves no group to ask about).
            wait_for_group(redis_client, keys.clicks)
            time.sleep(rng.uniform(1.5, 3.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            left_pending.append(redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"])
    finally:
        stop.set()
        producer.join()
    time.sleep(3.1)  # the claim idle time: the killed consumers' entries become claimable
    done = subprocess.run([CLI, "ingest", "--once", "--consumer", "final"], env=env, timeout=300)
    assert done.returncode == 0
    assert_exact(clickhouse, produced)
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] == 0
    assert any(left_pending), "no kill hit a batch in flight: the test proved nothing"


def test_sigterm_finishes_the_batch(env, redis_client, clickhouse, settings) -> None:
    """SIGTERM mid-backlog: the batch in hand is stored and acked, then the process exits 0."""
    from core import queries
    from core.clickid import ClickIds
    from core.keys import Keys

    keys = Keys(settings.redis_prefix)
    clicks = make_clicks(ClickIds(settings.secret_bytes), 30_000, int(time.time() * 1000) - HOUR_MS, 1)
    fill(redis_client, keys, clicks)
    proc = subprocess.Popen([CLI, "ingest", "--consumer", "polite"], env=env)
    deadline = time.monotonic() + 60
    while queries.click_count(clickhouse) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] == 0
    left = sum(len(clicks_in(fields)) for _, fields in redis_client.xrange(keys.clicks))
    assert 0 < left < len(clicks)  # it stopped mid-backlog...
    assert queries.click_count(clickhouse) == len(clicks) - left  # ...with every acked click stored once
    assert subprocess.run([CLI, "ingest", "--once"], env=env, timeout=120).returncode == 0
    assert_exact(clickhouse, clicks)


def clicks_in(fields: dict[bytes, bytes]) -> list:
    from redirector.click import decode_batch

    return decode_batch(fields[b"c"])
