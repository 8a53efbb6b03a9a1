"""An experiment, never a configuration: `clicktrail serve` (one worker) whose link cache finds a cached
link's packed record with one dict access, then unpacks it as the real cache does.

    .venv/bin/python -m benchmarks.paired --pairs many/few --server-module benchmarks.flatcache

The companion of benchmarks/dictcache.py. That one keeps every link decoded (about 910 B a link in the
worker) and so measures a lookup with no unpacking at all; this one keeps the packed records (the real
cache's ~200 B a link, plus one dict entry each) in one flat dict beside the real cache and skips only the
real packed tier's upkeep. It was written against the generational packed tier that redirector/packed.py
had before 2026-12-02 (its walk through the generations and its move of a used record to the youngest),
and showed that upkeep, not the unpacking, was most of the cost of a million links; the rebuilt tier
(one dict lookup and a use count) measures within a few hundredths of it (docs/performance.md, "Many
links"). Unlike the real cache, its `get` keeps every link it decodes in the decoded tier (the real one
admits a link on its second use since that tier was emptied); the freshness rule, misses and invalidation
are the real cache's. One worker per process (the flat dict is the process's), which is what
benchmarks.paired runs.
"""

from __future__ import annotations

import sys

from benchmarks.dictcache import serve_patched
from redirector import cache
from redirector.packed import pack, unpack

# code -> packed record of every link put, never evicted: the benchmark's links all fit the real budget.
_RECORDS: dict[str, bytes] = {}


def patch() -> None:
    real_get, real_put = cache.LinkCache.get, cache.LinkCache.put
    real_invalidate, real_clear = cache.LinkCache.invalidate, cache.LinkCache.clear

    def get(self: cache.LinkCache, code: str, now_ns: int, counted: bool = True):
        entry = self._hot.get(code)
        if entry is None:
            record = _RECORDS.get(code)
            if record is None:
                return real_get(self, code, now_ns, counted)
            expires_ms, link = unpack(code, record)
            entry = [expires_ms, link, self._packed.epoch, len(record)]
            self._keep_hot(code, entry)
        expires_ms = entry[0]  # fresh as the real cache tells it
        if now_ns // 1_000_000 <= expires_ms and expires_ms - self._ttl_ms > self._fresh_after_ms:
            self.hits += counted
            return True, entry[1]
        return real_get(self, code, now_ns, counted)

    def put(self: cache.LinkCache, code: str, link, now_ns: int, read_at: int | None = None) -> None:
        real_put(self, code, link, now_ns, read_at)
        if code in self._packed:  # the real cache took it (not refused as changed while read)
            _RECORDS[code] = pack(link, now_ns // 1_000_000 + self._ttl_ms)

    def invalidate(self: cache.LinkCache, code: str) -> None:
        _RECORDS.pop(code, None)
        real_invalidate(self, code)

    def clear(self: cache.LinkCache) -> None:
        _RECORDS.clear()
        real_clear(self)

    cache.LinkCache.get = get  # type: ignore[method-assign]
    cache.LinkCache.put = put  # type: ignore[method-assign]
    cache.LinkCache.invalidate = invalidate  # type: ignore[method-assign]
    cache.LinkCache.clear = clear  # type: ignore[method-assign]


def main() -> int:
    return serve_patched(patch)


if __name__ == "__main__":
    sys.exit(main())
