"""Counters of the redirect path as plain integers: incremented in the hot path at the cost of an
attribute add, and turned into Prometheus metrics only when /metrics is scraped (metrics.py)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

# Seconds. Sub-millisecond buckets: a healthy redirect takes a few hundred microseconds.
LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# Clicks per Redis write.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class RedirectStats:
    __slots__ = (
        "cache_flushes", "dropped", "fallbacks", "latency", "link_changes", "lookup_errors", "responses",
        "shortcut",
    )  # fmt: skip

    def __init__(self) -> None:
        self.responses: Counter[tuple[str, int]] = Counter()  # (method, status) → count
        self.shortcut = 0  # of those, 302s answered by the HTTP protocol itself (protocol.py)
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.lookup_errors = 0
        # Stored links corrected before they were cached, by reason (linkcheck.py).
        self.fallbacks: Counter[str] = Counter()
        # Times the link watcher stopped trusting the whole cache, by reason (linkwatch.py).
        self.cache_flushes: Counter[str] = Counter()
        # Entries of the link-change stream the link watcher read (each dropped its code from the cache).
        self.link_changes = 0
        # Records this worker left out or lost (endpoint and debugger records, link events), by reason:
        # kept here, not in a prometheus Counter, so that /metrics sums them over the workers.
        self.dropped: Counter[str] = Counter()

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


class RecorderStats:
    __slots__ = ("batches", "committed", "lost", "redis_failures", "replayed", "spooled")

    def __init__(self) -> None:
        self.committed = 0
        self.spooled = 0
        self.replayed = 0
        self.lost = 0
        self.batches = Histogram(BATCH_BUCKETS)
        self.redis_failures: Counter[str] = Counter()

    def observe_batch(self, size: int) -> None:
        self.batches.observe(size)
