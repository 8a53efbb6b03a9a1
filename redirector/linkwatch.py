"""Keeps a worker's link cache honest: tails the link-change stream (`Keys.link_events`, the same stream
the ingester mirrors into ClickHouse) and drops every changed or created code from the cache.

A stream, not pub/sub, because a stream cannot lose a message: after a disconnect the watcher resumes
from the last entry it saw. The one way to miss an entry is for it to be trimmed before it was read. The
watcher knows the ordinal of the last entry it read (Redis counts `entries-added`), and the ordinal of the
oldest entry still there is `entries-added - length + 1`; if that is past the next one it expected, entries
were trimmed unread, and every cached entry is made stale at once. So a change
reaches every worker within about one blocking read (`WATCH_BLOCK_MS`) while Redis is reachable, and the
cache TTL only bounds memory freshness, not correctness."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from core.keys import Keys
from core.links import LinkEvent
from redirector.cache import LinkCache
from redirector.stats import RedirectStats

log = logging.getLogger("clicktrail.links")

WATCH_BLOCK_MS = 1_000
WATCH_COUNT = 1_000
RETRY_DELAY_S = 1.0
_event_decoder = msgspec.msgpack.Decoder(LinkEvent)
# Why the whole cache stopped being trusted (`RedirectStats.cache_flushes`): an entry whose link cannot be
# told (the cache is emptied), or entries trimmed before they were read (every entry is revalidated).
UNREADABLE_LINK_EVENT = "unreadable_link_event"
TRIMMED = "trimmed"
FLUSH_REASONS = (UNREADABLE_LINK_EVENT, TRIMMED)


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    ms, _, seq = (raw.decode() if isinstance(raw, bytes) else raw).partition("-")
    return int(ms), int(seq or 0)


class LinkWatcher:
    def __init__(self, redis: Redis, keys: Keys, cache: LinkCache, stats: RedirectStats) -> None:
        self._redis = redis
        self._stream = keys.link_events
        self._cache = cache
        self._stats = stats
        self._last: tuple[int, int] | None = None
        self._ordinal = 0  # entries-added value of the entry `_last`

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except (RedisError, OSError) as exc:
                log.debug("link watch interrupted: %s", exc)
                await asyncio.sleep(RETRY_DELAY_S)

    async def _step(self) -> None:
        if self._last is None:
            # The cache fills from now on: only changes from here matter.
            info = await self._info()
            self._last = _entry_id(info["last-generated-id"]) if info else (0, 0)
            self._ordinal = info["entries-added"] if info else 0
        last = f"{self._last[0]}-{self._last[1]}"
        reply = await self._redis.xread({self._stream: last}, block=WATCH_BLOCK_MS, count=WATCH_COUNT)
        for _, entries in reply:
            for entry_id, fields in entries:
                try:
                    code = _event_decoder.decode(fields[b"l"]).code
                except (KeyError, msgspec.DecodeError):  # ValidationError is a DecodeError
                    self._cache.clear()  # cannot tell which link changed: trust none
                    self._stats.cache_flushes[UNREADABLE_LINK_EVENT] += 1
                    log.warning("link change %s is unreadable; emptied this worker's cache", entry_id)
                else:
                    self._cache.invalidate(code)
                self._stats.link_changes += 1
                self._last = _entry_id(entry_id)
                self._ordinal += 1
        await self._check_gap()

    async def _info(self) -> dict | None:
        try:
            return await self._redis.xinfo_stream(self._stream)
        except ResponseError:
            return None  # no stream yet: nothing was ever changed, nothing was trimmed

    async def _check_gap(self) -> None:
        info = await self._info()
        if info is None:
            return
        oldest_kept = info["entries-added"] - info["length"] + 1
        if oldest_kept > self._ordinal + 1:
            self._stats.cache_flushes[TRIMMED] += 1
            log.warning("link changes were trimmed before this worker read them; revalidating its cache")
            self._cache.expire_all()
            self._last = _entry_id(info["last-generated-id"])
            self._ordinal = info["entries-added"]
