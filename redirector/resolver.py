"""Resolving a code to its link: the per-worker cache first, then Redis, with concurrent misses coalesced
into one MGET (a flood of distinct codes costs one round trip per event-loop turn, not one per request).
While Redis is unreachable an expired cached copy is served rather than failing the viewer. A link read
from Redis is made servable (linkcheck.py) before it is cached, so the redirect never checks it again."""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import RedisError

from core.links import CorruptLink, Link, LinkStore
from redirector.cache import LinkCache
from redirector.futures import SharedFuture
from redirector.linkcheck import servable
from redirector.stats import RedirectStats


class LookupFailed(Exception):
    """Redis could not be asked and no cached copy exists."""


class LinkResolver:
    def __init__(self, store: LinkStore, cache: LinkCache, stats: RedirectStats) -> None:
        self._store = store
        self._cache = cache
        self._stats = stats
        self._waiting: dict[str, SharedFuture] = {}
        self._scheduled = False
        self._inflight: set[asyncio.Task] = set()

    async def resolve(self, code: str) -> Link | None:
        now_ns = time.monotonic_ns()
        hit, link = self._cache.get(code, now_ns)
        if hit:
            return link
        future = self._waiting.get(code)
        if future is None:
            future = self._waiting[code] = SharedFuture()  # every request for this code waits on it
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._dispatch)
        return await future

    def cached(self, code: str) -> Link | None:
        """The link if this worker's cache holds it, fresh; None on a miss or a cached "no such link". Not
        counted as a hit or a miss: a caller that serves the link counts it (`served_from_cache`); one that
        does not goes on to `resolve`, which counts."""
        return self._cache.get(code, time.monotonic_ns(), counted=False)[1]

    def served_from_cache(self) -> None:
        self._cache.hits += 1

    def _dispatch(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, {}
        task = asyncio.create_task(self._fetch(waiting))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _fetch(self, waiting: dict[str, SharedFuture]) -> None:
        codes = list(waiting)
        read_at = self._cache.changes
        try:
            links = await self._store.get_many(codes)
        except (RedisError, OSError) as exc:
            for code in codes:
                self._fail(code, waiting[code], exc)
            return
        try:
            now_ns = time.monotonic_ns()
            for code, stored in zip(codes, links, strict=True):
                if isinstance(stored, CorruptLink):
                    self._fail(code, waiting[code], stored)  # that code only: served stale, or a 503
                    continue
                waiting[code].set_result(self._keep(code, stored, now_ns, read_at))
        finally:
            # Whatever went wrong above, no request is left waiting for ever on this batch.
            for code, future in waiting.items():
                if not future.done():
                    self._fail(code, future, RuntimeError("link lookup failed"))

    async def warm(self, codes: list[str]) -> int:
        """Read `codes` into the cache ahead of their requests (preload.py): the number of links cached."""
        read_at = self._cache.changes
        links = await self._store.get_many(codes)
        now_ns = time.monotonic_ns()
        kept = 0
        for code, stored in zip(codes, links, strict=True):
            if stored is not None and not isinstance(stored, CorruptLink):  # a bad record waits for a request
                self._keep(code, stored, now_ns, read_at)
                kept += 1
        return kept

    def _keep(self, code: str, stored: Link | None, now_ns: int, read_at: int) -> Link | None:
        """A link read from Redis, made servable and cached (None: no such link, cached as such). What had
        to be mended is counted here, each time the link is read into the cache (again after its TTL, or
        by the preload and a miss racing at start-up): a rate of mended reads, not a count of links."""
        link = stored
        if stored is not None:
            link, reasons = servable(stored)
            self._stats.fallbacks.update(reasons)
        self._cache.put(code, link, now_ns, read_at)  # not if the code changed while it was read
        return link

    def _fail(self, code: str, future: SharedFuture, exc: Exception) -> None:
        """A stale cached copy if there is one, else LookupFailed (a 503) for the requests waiting."""
        stale = self._cache.stale(code)
        if stale is not None:
            future.set_result(stale)
            return
        future.set_exception(LookupFailed(str(exc)))
        future.exception()  # retrieved here: awaiting requests re-raise it
