"""The server's /metrics families read from plain counters (redirector/metrics.py): what a worker counts
reaches the exposition, summed with its live peers' snapshots (one of an older release lacks keys)."""

from __future__ import annotations

from prometheus_client import generate_latest

from redirector.cache import LinkCache
from redirector.linkwatch import TRIMMED, UNREADABLE_LINK_EVENT
from redirector.metrics import RedirectCollector, make_registry, snapshot
from redirector.stats import RecorderStats, RedirectStats


def exposition(own: dict, peers: list[dict]) -> str:
    registry = make_registry()
    registry.register(RedirectCollector(lambda: own, lambda: peers))
    return generate_latest(registry).decode()


def test_link_cache_flushes_are_exported_by_reason_and_summed_over_workers() -> None:
    cache = LinkCache(1 << 20, ttl_ms=600_000)
    mine, theirs = RedirectStats(), RedirectStats()
    mine.cache_flushes[UNREADABLE_LINK_EVENT] += 2
    theirs.cache_flushes[UNREADABLE_LINK_EVENT] += 1
    theirs.cache_flushes[TRIMMED] += 1
    own = snapshot(mine, RecorderStats(), cache, live=True)
    older = snapshot(RedirectStats(), RecorderStats(), cache, live=True)
    del older["cache_flushes"]
    text = exposition(own, [snapshot(theirs, RecorderStats(), cache, live=True), older])
    assert 'clicktrail_link_cache_flushes_total{reason="unreadable_link_event"} 3.0' in text
    assert 'clicktrail_link_cache_flushes_total{reason="trimmed"} 1.0' in text


def test_link_cache_flushes_show_zero_before_any() -> None:
    cache = LinkCache(1 << 20, ttl_ms=600_000)
    text = exposition(snapshot(RedirectStats(), RecorderStats(), cache, live=True), [])
    for reason in (UNREADABLE_LINK_EVENT, TRIMMED):
        assert f'clicktrail_link_cache_flushes_total{{reason="{reason}"}} 0.0' in text
