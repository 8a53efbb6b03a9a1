"""The link-change stream keeps every worker's cache honest, including across trims and reconnects."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.links import Link, LinkStore
from redirector.cache import LinkCache
from redirector.linkwatch import TRIMMED, UNREADABLE_LINK_EVENT, LinkWatcher
from redirector.stats import RedirectStats

pytestmark = pytest.mark.redis


def link(code: str) -> Link:
    return Link(
        code=code, url="https://s.example.com/", creator_id="c", host="s.example.com", created_at_ms=1
    )


async def settle(predicate, timeout_s: float = 5) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached")


def test_changes_and_creations_invalidate(settings, redis_client) -> None:
    async def scenario():
        redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
        store, cache = LinkStore(redis, keys), LinkCache(1 << 20, ttl_ms=600_000)
        stats = RedirectStats()
        watcher = LinkWatcher(redis, keys, cache, stats)
        task = asyncio.create_task(watcher.run())
        try:
            await settle(lambda: watcher._last is not None)
            cache.put("newcode", None, 0)  # a viewer tried the code before the creator made it
            cache.put("other", link("other"), 0)
            await store.create(link("newcode"))
            # Counted as read: "no such code" reads as None from `stale` before the creation is read too.
            await settle(lambda: stats.link_changes == 1)
            assert "newcode" not in cache._packed and cache.stale("other") is not None
            cache.put("newcode", link("newcode"), 0)
            await store.disable("newcode")
            await settle(lambda: stats.link_changes == 2)  # the change, read once
            assert cache.stale("newcode") is None
        finally:
            await stopped(task)
            await redis.aclose()

    asyncio.run(scenario())


async def stopped(task: asyncio.Task) -> None:
    """Cancel until the task ends, as the server's close does: redis-py can swallow a cancellation that
    arrives while it connects (the test then hung for pytest's whole timeout on a failed assertion)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


def test_a_trim_past_unread_changes_revalidates_everything(settings, redis_client) -> None:
    async def scenario():
        redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
        store, cache = LinkStore(redis, keys), LinkCache(1 << 20, ttl_ms=600_000)
        await store.create(link("a1234"))
        stats = RedirectStats()
        watcher = LinkWatcher(redis, keys, cache, stats)
        await watcher._step()  # starts at the newest entry
        await redis.xtrim(keys.link_events, maxlen=0)  # trimming what was read is no gap
        await watcher._step()
        assert stats.cache_flushes[TRIMMED] == 0
        # Two changes land and are trimmed away before this watcher reads them.
        await store.create(link("b1234"))
        await store.disable("a1234")
        newest = (await redis.xrevrange(keys.link_events, count=1))[0][0]
        await redis.xtrim(keys.link_events, minid=newest.decode().split("-")[0] + "-999999")
        cache.put("a1234", link("a1234"), now_ns=0)
        await watcher._step()
        assert stats.cache_flushes == {TRIMMED: 1}
        assert cache.get("a1234", now_ns=1)[0] is False  # no longer trusted: read again on next use
        await redis.aclose()

    asyncio.run(scenario())


def test_an_unreadable_change_empties_the_cache_and_is_counted(settings, redis_client) -> None:
    """An entry whose link cannot be told emptied the whole cache with nothing counted but a generic
    attribute no metric read: a flood of them made every worker read every link again, unseen."""

    async def scenario():
        redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
        store, cache, stats = LinkStore(redis, keys), LinkCache(1 << 20, ttl_ms=600_000), RedirectStats()
        watcher = LinkWatcher(redis, keys, cache, stats)
        await watcher._step()  # starts at the newest entry
        cache.put("a1234", link("a1234"), now_ns=0)
        await redis.xadd(keys.link_events, {"l": b"\xc1 not msgpack"})
        await redis.xadd(keys.link_events, {"x": b"no link field"})
        await store.create(link("b1234"))  # a readable one behind them is still taken
        await watcher._step()
        assert cache.stale("a1234") is None and len(cache) == 0
        assert stats.cache_flushes == {UNREADABLE_LINK_EVENT: 2}
        assert stats.link_changes == 3  # unreadable or not, every entry read is counted
        await redis.aclose()

    asyncio.run(scenario())
