"""`clicktrail deliver` as a real process: killed with SIGKILL mid-flight and restarted, exactly the
undelivered events are delivered afterwards, each at least once and in order; on SIGTERM it finishes the
request in flight, takes nothing more and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from attribution import events_out
from attribution.endpoints import EndpointStore, new_endpoint
from attribution.outbox import Outbox
from core.clock import now_ms
from core.keys import Keys
from core.links import Link
from core.redisclient import failover_client
from tests.conftest import free_port
from tests.integration.receivers import Receiver, fast
from tests.integration.servehelp import settings_env
from tests.integration.test_events_out import add_endpoint, emit_links

pytestmark = [pytest.mark.redis, pytest.mark.slow]


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """A test that fails while its `deliver` runs must not leave it running (a `--once` that never ends
    outlived its test by 18 minutes so)."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_deliver(settings, *args: str) -> subprocess.Popen:
    env = settings_env(settings)
    env.update(
        CLICKTRAIL_ENDPOINTS_ALLOW_HTTP="true",
        CLICKTRAIL_ENDPOINTS_ALLOW_PRIVATE="true",
        CLICKTRAIL_DELIVER_CONNECT_TIMEOUT_MS=str(settings.deliver_connect_timeout_ms),
        CLICKTRAIL_DELIVER_READ_TIMEOUT_MS=str(settings.deliver_read_timeout_ms),
        CLICKTRAIL_DELIVER_RETRY_BASE_MS="40",
        CLICKTRAIL_DELIVER_POLL_INTERVAL_MS="20",
    )
    command = [sys.executable, "-m", "clicktrail.cli", "deliver", *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    return proc


def collapse(ids: list[str]) -> list[str]:
    """Consecutive repeats (a redelivery of the event in flight) folded into one."""
    return [x for i, x in enumerate(ids) if i == 0 or ids[i - 1] != x]


async def exited(proc: subprocess.Popen, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        assert time.monotonic() < deadline, "deliver did not exit"
        await asyncio.sleep(0.02)
    return proc.returncode


def test_killed_mid_flight_and_restarted(settings, redis_client):
    settings = fast(settings, deliver_read_timeout_ms=500)

    async def scenario():
        receiver = await Receiver(delay_s=0.05).start()
        try:
            await add_endpoint(settings, "alice", receiver.url)
            ids = await emit_links(settings, "alice", 30)
            first = start_deliver(settings)
            await receiver.wait_for(8, timeout_s=20)
            os.kill(first.pid, signal.SIGKILL)
            await exited(first, 5)
            before = len(receiver.requests)
            second = start_deliver(settings)
            await receiver.wait_for(before + 1, timeout_s=20)
            deadline = time.monotonic() + 20
            while len(set(receiver.ids())) < len(ids):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # nothing more arrives
            second.send_signal(signal.SIGTERM)
            assert await exited(second, 10) == 0
        finally:
            await receiver.close()
        got = receiver.ids()
        assert collapse(got) == ids  # each once, in order, the one in flight at the kill perhaps twice
        assert len(got) - len(ids) <= 1
        resumed = collapse(got[before:])
        # The restarted worker sent exactly what had not been acknowledged: from the last one seen on.
        assert resumed == ids[ids.index(got[before - 1]) + (0 if got[before] == got[before - 1] else 1) :]
        client = redis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        [endpoint_id] = [i.decode() for i in client.smembers(keys.endpoints)]
        assert client.xlen(keys.endpoint_queue(endpoint_id)) == 0
        client.close()

    asyncio.run(scenario())


def test_sigterm_finishes_the_request_in_flight_and_takes_no_more(settings, redis_client):
    settings = fast(settings, deliver_read_timeout_ms=3000)

    async def scenario():
        receiver = await Receiver(delay_s=0.8).start()
        try:
            endpoint_id = await add_endpoint(settings, "alice", receiver.url)
            ids = await emit_links(settings, "alice", 3)
            proc = start_deliver(settings)
            await receiver.wait_for(1, timeout_s=20)
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc, 10) == 0
            client = redis.Redis.from_url(settings.redis_url)
            keys = Keys(settings.redis_prefix)
            # The request in flight finished and was acknowledged; the other two wait for the next worker.
            assert receiver.ids() == ids[:1] and client.xlen(keys.endpoint_queue(endpoint_id)) == 2
            receiver.delay_s = 0
            port = free_port()
            again = start_deliver(settings, "--metrics-port", str(port))
            await receiver.wait_for(3, timeout_s=20)
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient() as http:
                exported = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert "clicktrail_events_delivered_total 2.0" in exported
            assert "clicktrail_event_delivery_seconds_count 2.0" in exported
            again.send_signal(signal.SIGTERM)
            assert await exited(again, 10) == 0
            assert receiver.ids() == ids and client.xlen(keys.endpoint_queue(endpoint_id)) == 0
            client.close()
        finally:
            await receiver.close()

    asyncio.run(scenario())


@pytest.mark.cluster
def test_deliver_on_a_redis_cluster(cluster_settings, cluster_redis) -> None:
    """`clicktrail deliver` with CLICKTRAIL_REDIS_CLUSTER: it took a plain client and the single-node key
    names, so every command went to the first node, each MOVED answer read as "Redis unavailable", and
    nothing was ever delivered."""
    settings = fast(cluster_settings)

    async def scenario():
        receiver = await Receiver().start()
        redis = failover_client(settings, role="test")
        keys = Keys.of(settings)
        try:
            endpoint = new_endpoint("creator:alice", receiver.url, ("link.updated",), "", now_ms() - 1000)
            assert await EndpointStore(redis, keys, pytest.fail).create(endpoint)
            outbox, ids = Outbox(redis, keys), []
            for n in range(5):
                link = Link(f"code{n}", "https://shop.example.com/", "alice", "shop.example.com", 1_000,
                            updated_at_ms=1_000 + n)  # fmt: skip
                event = events_out.link_event("link.updated", link, "http://x")
                assert await outbox.emit([event], now_ms()) == 1
                ids.append(event.id)
            proc = start_deliver(settings, "--once")
            assert await exited(proc, 30) == 0, proc.stdout.read().decode()
            assert collapse(receiver.ids()) == ids
        finally:
            await receiver.close()
            await redis.aclose()

    asyncio.run(scenario())
