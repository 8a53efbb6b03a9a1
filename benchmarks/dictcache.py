"""An experiment, never a configuration: `clicktrail serve` (one worker) whose link cache answers every
cached code from one dict of decoded links, the cheapest lookup Python has.

    .venv/bin/python -m benchmarks.paired --pairs many/few --server-module benchmarks.dictcache

Why: with 1,000,000 links the worker spends about 40 % more CPU per redirect than with 1,000, and the
profile puts only part of that in the link cache's lookup (docs/performance.md, "Many links"). Served
through this module, both sides of the many/few pair look a link up with one dict access and no unpacking,
so their ratio is what a million links cost the rest of the request path (benchmarks/flatcache.py adds the
unpacking back). The hot tier (redirector/cache.py) is made large
enough to hold every link decoded (about 925 bytes each, far past the 250 B a link the packed cache keeps),
and `get` answers a fresh link from it alone (with the real cache's freshness rule); everything else
(misses, stale links, invalidation, the packed records behind it) is the real cache's.
"""

from __future__ import annotations

import sys

from redirector import cache

# More than any benchmark's links: no link is ever dropped from the decoded tier.
DECODED_LINKS = 4_000_000


def patch() -> None:
    packed_get = cache.LinkCache.get

    def get(self: cache.LinkCache, code: str, now_ns: int, counted: bool = True):
        entry = self._hot.get(code)
        if entry is not None:
            expires_ms = entry[0]  # fresh as the real cache tells it; only the packed upkeep is skipped
            if now_ns // 1_000_000 <= expires_ms and expires_ms - self._ttl_ms > self._fresh_after_ms:
                self.hits += counted
                return True, entry[1]
        return packed_get(self, code, now_ns, counted)

    cache.LinkCache.get = get  # type: ignore[method-assign]
    cache.LinkCache.__init__.__defaults__ = (DECODED_LINKS,)
    cache.HOT_RECORD_BYTES = 2**62  # no byte bound either


def serve_patched(patch_cache) -> int:
    """The `clicktrail` command line with the cache patched first (this experiment's, or another's)."""
    patch_cache()
    from redirector import server

    serve = server.serve

    def one_worker(settings, *, host: str, port: int, workers: int) -> int:
        # The patch lives in this process: more workers would be started afresh, each with the real cache.
        # Checked on the count the command line parsed, whatever its spelling.
        if workers != 1:
            sys.exit("this experiment serves one worker only (--workers 1)")
        return serve(settings, host=host, port=port, workers=workers)

    server.serve = one_worker  # type: ignore[assignment]  # `clicktrail serve` looks it up when run
    from clicktrail.cli import main as cli

    return cli()


def main() -> int:
    return serve_patched(patch)


if __name__ == "__main__":
    sys.exit(main())
