"""A fresh worker warms its link cache from Redis (redirector/preload.py): every stored link of its own
prefix and no other, pages past the first, a bad record skipped, the budget and the time limit obeyed."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.links import Link, LinkStore, encode_link
from core.settings import Settings
from redirector.cache import LinkCache
from redirector.preload import PAGE_LINKS, Preload
from redirector.resolver import LinkResolver
from redirector.stats import RedirectStats

pytestmark = pytest.mark.redis


def link(code: str) -> Link:
    return Link(code, f"https://shop.example.com/p/{code}", "creator", "shop.example.com", 1)


async def store(redis: Redis, keys: Keys, codes: list[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for code in codes:
            pipe.set(keys.link(code), encode_link(link(code)))
        await pipe.execute()


async def preload(settings: Settings, cache: LinkCache, max_s: float = 60) -> Preload:
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = Keys.of(settings)
        resolver = LinkResolver(LinkStore(redis, keys), cache, RedirectStats())
        warm = Preload(LinkStore(redis, keys), resolver, cache, max_s)
        await warm.run()
        return warm
    finally:
        await redis.aclose()


def cached(cache: LinkCache, code: str) -> Link | None:
    return cache.get(code, 0, counted=False)[1]


@pytest.mark.parametrize("prefix_chars", ["", "*", "[a-z]?", "\\"])
def test_every_link_of_the_prefix_is_preloaded_and_no_other(settings, redis_client, prefix_chars) -> None:
    """Including prefixes with glob characters: the SCAN pattern must match them literally."""
    settings = settings.model_copy(update={"redis_prefix": settings.redis_prefix + prefix_chars})
    # A prefix the unescaped pattern would match too (each glob character read as a wildcard).
    base = settings.redis_prefix[: len(settings.redis_prefix) - len(prefix_chars)]
    other = settings.model_copy(update={"redis_prefix": base + "x" * len(prefix_chars) + "w"})
    codes = [f"code{i}" for i in range(PAGE_LINKS * 2 + 17)]  # three pages, the last one short

    async def scenario() -> tuple[Preload, LinkCache, list[str]]:
        redis = Redis.from_url(settings.redis_url)
        try:
            await store(redis, Keys.of(settings), codes)
            await store(redis, Keys.of(other), ["foreign1", "foreign2"])
            await redis.set(Keys.of(settings).link("broken"), b"\xc1 not msgpack")
            listed = [code async for code in LinkStore(redis, Keys.of(settings)).codes()]
        finally:
            await redis.aclose()
        cache = LinkCache(64 * 2**20, 600_000)
        return await preload(settings, cache), cache, listed

    try:
        warm, cache, listed = asyncio.run(scenario())
        assert sorted(listed) == sorted([*codes, "broken"])
        assert warm.done and warm.links == len(codes)
        assert all(cached(cache, code) == link(code) for code in codes)
        assert cached(cache, "foreign1") is None and cached(cache, "broken") is None
        assert len(cache) == len(codes)
    finally:
        for key in redis_client.scan_iter(match=Keys.of(other).link_pattern()):
            redis_client.delete(key)


def test_the_preload_stops_near_the_budget(settings, redis_client) -> None:
    codes = [f"code{i}" for i in range(PAGE_LINKS * 5)]
    cache = LinkCache(200 * PAGE_LINKS, 600_000)  # room for about one page of these links

    async def scenario() -> Preload:
        redis = Redis.from_url(settings.redis_url)
        try:
            await store(redis, Keys.of(settings), codes)
        finally:
            await redis.aclose()
        return await preload(settings, cache)

    warm = asyncio.run(scenario())
    assert warm.done
    assert warm.links < len(codes) // 2  # stopped, not read all five pages through a full cache
    assert cache.bytes <= cache.max_bytes


def test_no_preload_when_turned_off(settings, redis_client) -> None:
    async def scenario() -> Preload:
        redis = Redis.from_url(settings.redis_url)
        try:
            await store(redis, Keys.of(settings), ["a1", "a2"])
        finally:
            await redis.aclose()
        return await preload(settings, cache, max_s=0)

    cache = LinkCache(2**20, 600_000)
    warm = asyncio.run(scenario())
    assert warm.done and warm.links == 0 and len(cache) == 0


def test_readyz_and_metrics_say_warming_until_the_preload_is_done(settings) -> None:
    from tests.integration.apphelp import running_app

    async def scenario() -> None:
        async with running_app(settings) as (app, client):
            for _ in range(100):
                if app.ctx.preload.done:
                    break
                await asyncio.sleep(0.05)
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["warming"] is False
            assert "clicktrail_link_cache_warming 0.0" in (await client.get("/metrics")).text
            app.ctx.preload.done = False  # as while it runs: still ready (it records clicks), but warming
            warming = await client.get("/readyz")
            assert warming.status_code == 200 and warming.json()["warming"] is True
            assert "clicktrail_link_cache_warming 1.0" in (await client.get("/metrics")).text

    asyncio.run(scenario())


class PausingStore(LinkStore):
    """Reads Redis for real, then holds the answer until the test lets it go (a reply in flight)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        super().__init__(redis, keys)
        self.read = asyncio.Event()
        self.go_on = asyncio.Event()

    async def get_many(self, codes: list[str]):
        links = await super().get_many(codes)
        self.read.set()
        await self.go_on.wait()
        return links


@pytest.mark.parametrize("path", ["preload", "miss"])
def test_a_link_changed_while_its_record_is_read_is_not_cached_stale(settings, redis_client, path) -> None:
    """The watcher drops a changed code; a read of its old record still in flight must not put it back
    (it would be served for the cache's whole TTL)."""

    async def scenario() -> None:
        redis = Redis.from_url(settings.redis_url)
        try:
            keys = Keys.of(settings)
            await store(redis, keys, ["changing", "steady"])
            cache = LinkCache(2**20, 600_000)
            paused = PausingStore(redis, keys)
            resolver = LinkResolver(paused, cache, RedirectStats())
            if path == "preload":
                reading = asyncio.create_task(resolver.warm(["changing", "steady"]))
            else:
                reading = asyncio.gather(resolver.resolve("changing"), resolver.resolve("steady"))
            await asyncio.wait_for(paused.read.wait(), 5)
            cache.invalidate("changing")  # what the watcher does on the change event
            paused.go_on.set()
            await reading
            assert cached(cache, "changing") is None  # read again on its next request
            assert cached(cache, "steady") == link("steady")
        finally:
            await redis.aclose()

    asyncio.run(scenario())
