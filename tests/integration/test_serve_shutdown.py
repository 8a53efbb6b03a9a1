"""SIGTERM under load: the server stops accepting, finishes what it answered, and every click whose 302
reached a client is in the stream."""

from __future__ import annotations

import asyncio
import signal
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from core.keys import Keys
from redirector.recorder import count_clicks
from tests.integration.servehelp import ServeProcess

pytestmark = pytest.mark.redis

LOAD_CONNECTIONS = 32
LOAD_BOUND_S = 10  # the load stops by itself even if the server never goes away


async def hammer(url: str, answered: list[str], stop_at: float) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < stop_at:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                return  # the server stopped accepting: this connection is done
            if response.status_code == 302:
                answered.append(parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0])


def test_sigterm_under_load_loses_no_answered_click(settings) -> None:
    server = ServeProcess(settings)
    try:
        created = httpx.post(
            server.url + "/api/links",
            json={"url": "https://shop.example.com/p", "creator_id": "c", "code": "term-test"},
            headers={"authorization": f"Bearer {settings.admin_token}"},
        )
        assert created.status_code == 201

        async def scenario() -> list[str]:
            answered: list[str] = []
            stop_at = time.monotonic() + LOAD_BOUND_S
            load = [
                asyncio.create_task(hammer(server.url + "/term-test", answered, stop_at))
                for _ in range(LOAD_CONNECTIONS)
            ]
            # Bounded too: on a loaded machine the load may end (its time bound, or a timeout) before
            # 500 answers; then SIGTERM comes anyway and the count below fails clearly, never a hang.
            while len(answered) < 500 and not all(task.done() for task in load):
                await asyncio.sleep(0.01)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*load)
            return answered

        answered = asyncio.run(scenario())
        # uvicorn re-raises the signal once its orderly shutdown is complete.
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM), server.output()
    finally:
        server.stop()

    async def recorded() -> tuple[set[str], dict]:
        redis = Redis.from_url(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        try:
            return set((await count_clicks(redis, keys))[1]), await redis.hgetall(keys.recorder_seq)
        finally:
            await redis.aclose()

    stored, recorders = asyncio.run(recorded())
    assert recorders == {}, "the lifespan shutdown did not run: the recorder never closed"
    assert len(answered) >= 500
    assert set(answered) <= stored, f"{len(set(answered) - stored)} answered clicks missing"
