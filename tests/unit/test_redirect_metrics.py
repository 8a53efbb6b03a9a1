"""The server's /metrics families read from plain counters (redirector/metrics.py): what a worker counts
reaches the exposition, summed with its live peers' snapshots (one of an older release lacks keys)."""

from __future__ import annotations

from prometheus_client import generate_latest

from attribution.endpoints import UNREADABLE_ENDPOINT
from attribution.outbox import LINK_EVENT_LOST
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


def test_link_changes_read_are_summed_over_workers() -> None:
    cache = LinkCache(1 << 20, ttl_ms=600_000)
    mine, theirs = RedirectStats(), RedirectStats()
    mine.link_changes, theirs.link_changes = 5, 2
    older = snapshot(RedirectStats(), RecorderStats(), cache, live=True)
    del older["link_changes"]
    own = snapshot(mine, RecorderStats(), cache, live=True)
    text = exposition(own, [snapshot(theirs, RecorderStats(), cache, live=True), older])
    assert "clicktrail_link_changes_read_total 7.0" in text


def test_dropped_records_are_summed_over_workers_not_one_workers_figure() -> None:
    """serve runs several workers and a scrape reaches one: a worker's own prometheus Counter would read
    1, 0, 1, 0 ... as the scrapes alternate (a reset each time). Each worker's drops are in its snapshot."""
    cache = LinkCache(1 << 20, ttl_ms=600_000)
    mine, theirs = RedirectStats(), RedirectStats()
    mine.drop(LINK_EVENT_LOST)
    theirs.drop(UNREADABLE_ENDPOINT)
    theirs.drop(UNREADABLE_ENDPOINT)
    theirs.drop("a_reason_of_a_newer_release")
    older = snapshot(RedirectStats(), RecorderStats(), cache, live=True)
    del older["dropped"]
    peers = [snapshot(theirs, RecorderStats(), cache, live=True), older]
    for own, others in ((snapshot(mine, RecorderStats(), cache, live=True), peers),
                        (peers[0], [snapshot(mine, RecorderStats(), cache, live=True), older])):  # fmt: skip
        text = exposition(own, others)
        assert 'clicktrail_records_dropped_total{reason="link_event_lost"} 1.0' in text
        assert 'clicktrail_records_dropped_total{reason="unreadable_endpoint"} 2.0' in text
        assert 'clicktrail_records_dropped_total{reason="a_reason_of_a_newer_release"} 1.0' in text
        assert 'clicktrail_records_dropped_total{reason="webhook_record_lost"} 0.0' in text
