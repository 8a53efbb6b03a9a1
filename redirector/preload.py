"""Warming a fresh worker's link cache at start-up.

A worker starts with an empty cache; with a million links and uniform traffic, nearly every request of its
first minutes is a miss read from Redis (coalesced, but still a round trip and a decode each), so a fresh
worker answers at about half the rate of a warm one. Here each worker reads the stored links in pages
(SCAN, then one MGET per page, the resolver's own miss path) until the cache is nearly full or
`link_cache_preload_max_s` has passed. It runs beside the server: redirects are answered meanwhile (misses
as usual); /readyz says `"warming": true` and the gauge `clicktrail_link_cache_warming` counts the workers
still at it (a benchmark waits for 0). A change made while it runs is not lost: a record read before the
watcher dropped its code is not cached (LinkCache.put's `read_at`). A failure stops it with a warning,
never the worker."""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from core.links import LinkStore
from redirector.cache import LinkCache
from redirector.resolver import LinkResolver

log = logging.getLogger("clicktrail.links")

PAGE_LINKS = 1_000
# Stop this short of the budget: past it the cache drops a link for every link read, so reading on would
# only churn.
FULL_SHARE = 0.9


class Preload:
    def __init__(self, store: LinkStore, resolver: LinkResolver, cache: LinkCache, max_s: float) -> None:
        self._store = store
        self._resolver = resolver
        self._cache = cache
        self._max_s = max_s
        self.done = max_s <= 0 or cache.max_bytes <= 0
        self.links = 0

    async def run(self) -> None:
        if self.done:
            return
        started = time.monotonic()
        reason = "every link read"
        try:
            page: list[str] = []
            async for code in self._store.codes(PAGE_LINKS):
                page.append(code)
                if len(page) < PAGE_LINKS:
                    continue
                self.links += await self._resolver.warm(page)
                page = []
                if self._cache.bytes >= FULL_SHARE * self._cache.max_bytes:
                    reason = "cache full"
                    break
                if time.monotonic() - started > self._max_s:
                    reason = "time limit"
                    break
            else:
                if page:
                    self.links += await self._resolver.warm(page)
        except (RedisError, OSError) as exc:
            reason = f"stopped: {type(exc).__name__}: {exc}"
        finally:
            self.done = True
        log.info(
            "link cache preloaded: %d links, %.1f MiB in %.1f s (%s)",
            self.links,
            self._cache.bytes / 2**20,
            time.monotonic() - started,
            reason,
        )
