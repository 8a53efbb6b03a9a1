"""Stream lag as operators see it, computed the same through the sync and the asyncio Redis clients."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from core.streaminfo import stream_lag, stream_lag_async

pytestmark = pytest.mark.redis


def test_sync_and_async_agree(settings, redis_client) -> None:
    stream = settings.redis_prefix + "lagstream"
    for i in range(6):
        redis_client.xadd(stream, {"n": i})
    assert stream_lag(redis_client, stream, "g")[0] == 6  # no group yet: everything is behind
    redis_client.xgroup_create(stream, "g", id="0")
    redis_client.xreadgroup("g", "c1", {stream: ">"}, count=2)  # 2 pending, 4 undelivered
    entries, age_s = stream_lag(redis_client, stream, "g")

    async def from_async() -> tuple[int, float]:
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            return await stream_lag_async(client, stream, "g")
        finally:
            await client.aclose()

    async_entries, async_age_s = asyncio.run(from_async())
    assert entries == async_entries == 6
    assert 0 <= age_s <= async_age_s < 60
    pending = redis_client.xpending(stream, "g")["min"]
    redis_client.xack(stream, "g", pending)
    assert stream_lag(redis_client, stream, "g")[0] == 5
