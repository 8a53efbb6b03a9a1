"""The whole app while Redis is down: cached links keep redirecting, clicks spool, and once Redis is back
every answered click is in the stream exactly once."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from redirector.recorder import count_clicks
from tests.integration.apphelp import make_link, running_app

pytestmark = pytest.mark.redis


def test_redis_stopped_mid_run(settings, private_redis) -> None:
    settings = settings.model_copy(update={"redis_url": private_redis.url, "spool_retry_interval_ms": 50})

    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c", "https://shop.example.com/p")
            answered = []

            async def burst(n: int) -> None:
                for response in await asyncio.gather(*(client.get(f"/{link['code']}") for _ in range(n))):
                    assert response.status_code == 302
                    answered.append(parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0])

            await burst(100)
            private_redis.kill()
            await burst(100)  # served from the cache, recorded in the spool
            assert (await client.get("/readyz")).json()["recording"] == "spool"
            private_redis.start()
            deadline = time.monotonic() + 20
            while not app.ctx.recorder.live:
                assert time.monotonic() < deadline, "spool never replayed"
                await asyncio.sleep(0.05)
            await burst(100)
            count, ids = await count_clicks(app.ctx.redis, app.ctx.keys)
            assert count == 300 and sorted(ids) == sorted(answered)
            metrics = (await client.get("/metrics")).text
            assert 'clicktrail_clicks_total{outcome="spooled"} 100.0' in metrics
            assert 'clicktrail_clicks_total{outcome="replayed"} 100.0' in metrics

    asyncio.run(scenario())


def test_paused_redis_never_holds_a_viewer(settings, private_redis) -> None:
    """SIGSTOP: nothing answers, nothing fails. A cached link still redirects (the click spools); a link this
    worker never saw gets a prompt 503 instead of waiting for Redis to wake up."""
    import signal

    settings = settings.model_copy(update={"redis_url": private_redis.url, "spool_retry_interval_ms": 50})

    async def scenario():
        async with running_app(settings) as (app, client):
            cached = await make_link(client, "c", "https://shop.example.com/cached")
            unseen = await make_link(client, "c", "https://shop.example.com/unseen")
            assert (await client.get(f"/{cached['code']}")).status_code == 302
            private_redis.proc.send_signal(signal.SIGSTOP)
            try:
                hit, miss = await asyncio.wait_for(
                    asyncio.gather(client.get(f"/{cached['code']}"), client.get(f"/{unseen['code']}")), 5
                )
            finally:
                private_redis.proc.send_signal(signal.SIGCONT)
            assert hit.status_code == 302
            assert miss.status_code == 503 and miss.headers["retry-after"] == "1"
            deadline = time.monotonic() + 20
            while not app.ctx.recorder.live:
                assert time.monotonic() < deadline, "spool never replayed"
                await asyncio.sleep(0.05)
            count, _ = await count_clicks(app.ctx.redis, app.ctx.keys)
            assert count == 2

    asyncio.run(scenario())
