"""Prometheus exposition. The redirect path keeps plain counters (stats.py); this collector reads them at
scrape time, so the hot path pays no metric-library cost. Other components register ordinary
prometheus_client metrics on the same per-process registry (never the global default one).

`serve --workers N` runs N processes behind one port, and a scrape reaches one of them. So every worker
publishes a snapshot of its counters to `DATA_DIR/metrics/<worker>.json` each second, and the worker that
answers adds the snapshots of its live peers to its own counters: /metrics shows the whole server (peers'
figures at most a second old)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from itertools import zip_longest
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from attribution.debugger import RECORD_LOST, UNREADABLE_RECORD
from attribution.endpoints import UNREADABLE_ENDPOINT
from attribution.outbox import LINK_EVENT_LOST, RECORDS_DROPPED_HELP, RECORDS_DROPPED_METRIC
from redirector.cache import LinkCache
from redirector.linkcheck import REASONS
from redirector.linkwatch import FLUSH_REASONS
from redirector.redirect import CLICK_LIMIT_UNAVAILABLE, LINK_EXPIRED, QUERY_TOO_LONG
from redirector.stats import BATCH_BUCKETS, LATENCY_BUCKETS_S, RecorderStats, RedirectStats

SNAPSHOT_INTERVAL_S = 1.0
# A snapshot older than this belongs to a worker that is gone or hung: left out of the sum.
SNAPSHOT_MAX_AGE_S = 30.0
OUTCOMES = ("committed", "spooled", "replayed", "lost")
# What a server worker drops (RedirectStats.drop), shown at 0 until it happens.
DROP_REASONS = (UNREADABLE_ENDPOINT, UNREADABLE_RECORD, RECORD_LOST, LINK_EVENT_LOST)


def snapshot(
    redirects: RedirectStats, recorder: RecorderStats, cache: LinkCache, live: bool, warming: bool = False
) -> dict:
    return {
        "responses": [[m, s, n] for (m, s), n in redirects.responses.items()],
        "latency": [redirects.latency.counts, redirects.latency.total],
        "lookup_errors": redirects.lookup_errors,
        "fallbacks": dict(redirects.fallbacks),
        "cache_flushes": dict(redirects.cache_flushes),
        "link_changes": redirects.link_changes,
        "dropped": dict(redirects.dropped),
        "clicks": {outcome: getattr(recorder, outcome) for outcome in OUTCOMES},
        "batches": [recorder.batches.counts, recorder.batches.total],
        "redis_failures": dict(recorder.redis_failures),
        "live": int(live),
        "cache": [cache.hits, cache.misses, len(cache), cache.bytes],
        "workers": 1,
        "shortcut": redirects.shortcut,
        "warming": int(warming),
    }


def merge(snapshots: list[dict]) -> dict:
    total = snapshots[0]
    total = orjson.loads(orjson.dumps(total))  # a deep copy we may add into
    for snap in snapshots[1:]:
        responses = {(m, s): n for m, s, n in total["responses"]}
        for m, s, n in snap["responses"]:
            responses[(m, s)] = responses.get((m, s), 0) + n
        total["responses"] = [[m, s, n] for (m, s), n in responses.items()]
        for name in ("latency", "batches"):
            counts = [a + b for a, b in zip(total[name][0], snap[name][0], strict=True)]
            total[name] = [counts, total[name][1] + snap[name][1]]
        for outcome in OUTCOMES:
            total["clicks"][outcome] += snap["clicks"][outcome]
        for error, n in snap["redis_failures"].items():
            total["redis_failures"][error] = total["redis_failures"].get(error, 0) + n
        for name in ("fallbacks", "cache_flushes", "dropped"):  # absent in a peer of an older version
            by_reason = total.setdefault(name, {})
            for reason, n in snap.get(name, {}).items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        # A peer of an older version has no cache bytes: counted as 0.
        total["cache"] = [a + b for a, b in zip_longest(total["cache"], snap["cache"], fillvalue=0)]
        for name in ("lookup_errors", "live", "workers"):
            total[name] += snap[name]
        for name in ("shortcut", "warming", "link_changes"):  # absent in a peer of an older version
            total[name] = total.get(name, 0) + snap.get(name, 0)
    return total


class SnapshotDir:
    """This worker's snapshot file and the reading of its peers'."""

    def __init__(self, directory: Path, worker_id: str) -> None:
        self.directory = directory
        self.path = directory / f"{worker_id}.json"

    def publish(self, snap: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(snap))
        tmp.replace(self.path)

    def peers(self) -> list[dict]:
        found = []
        now = time.time()
        for path in self.directory.glob("*.json") if self.directory.is_dir() else ():
            if path == self.path:
                continue
            try:
                if now - path.stat().st_mtime > SNAPSHOT_MAX_AGE_S or not _alive(path.stem):
                    continue
                found.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # vanished or half-written between listing and reading
        return found

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _alive(worker_id: str) -> bool:
    """Worker ids are `<host>-<pid>-<random>`: is that pid running here?"""
    try:
        pid = int(worker_id.rsplit("-", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _histogram(name: str, doc: str, bounds: tuple, counts: list[int], total: float) -> HistogramMetricFamily:
    buckets = []
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    buckets.append(("+Inf", cumulative + counts[-1]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class RedirectCollector:
    def __init__(self, own: Callable[[], dict], peers: Callable[[], list[dict]]) -> None:
        self._own = own
        self._peers = peers

    def collect(self) -> Iterator[Metric]:
        snap = merge([self._own(), *self._peers()])
        responses = CounterMetricFamily(
            "clicktrail_redirects",
            "Redirect-path responses by method and status",
            labels=["method", "status"],
        )
        for method, status, count in sorted(snap["responses"]):
            responses.add_metric([method, str(status)], count)
        yield responses
        yield _histogram(
            "clicktrail_redirect_latency_seconds",
            "Time from request to response start",
            LATENCY_BUCKETS_S,
            *snap["latency"],
        )
        yield CounterMetricFamily(
            "clicktrail_link_lookup_errors",
            "Link lookups that failed (Redis down, no cached copy)",
            value=snap["lookup_errors"],
        )
        fallbacks = CounterMetricFamily(
            "clicktrail_redirect_fallbacks",
            "Corrections on the redirect path by reason: stored links corrected as they entered a worker's "
            "cache (click parameter or URL bytes unfit for a header, click parameter in the stored URL), "
            "viewer query strings too long to pass through, smart links answered as expired (not "
            "recorded) and limited links whose click counter could not be asked (503)",
            labels=["reason"],
        )
        for reason in (*REASONS, QUERY_TOO_LONG, LINK_EXPIRED, CLICK_LIMIT_UNAVAILABLE):
            fallbacks.add_metric([reason], snap.get("fallbacks", {}).get(reason, 0))
        yield fallbacks
        clicks = CounterMetricFamily("clicktrail_clicks", "Clicks by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            clicks.add_metric([outcome], snap["clicks"][outcome])
        yield clicks
        yield _histogram(
            "clicktrail_click_batch_size", "Clicks per recorder write", BATCH_BUCKETS, *snap["batches"]
        )
        failures = CounterMetricFamily(
            "clicktrail_recorder_redis_failures", "Failed Redis writes by error", labels=["error"]
        )
        for error, count in sorted(snap["redis_failures"].items()):
            failures.add_metric([error], count)
        yield failures
        yield GaugeMetricFamily(
            "clicktrail_workers", "Redirect worker processes reporting", value=snap["workers"]
        )
        yield GaugeMetricFamily(
            "clicktrail_recorder_live",
            "Workers recording into Redis (the others are spooling)",
            value=snap["live"],
        )
        hits, misses, entries, cache_bytes = (snap["cache"] + [0])[:4]
        lookups = CounterMetricFamily("clicktrail_link_cache", "Link cache lookups", labels=["result"])
        lookups.add_metric(["hit"], hits)
        lookups.add_metric(["miss"], misses)
        yield lookups
        yield GaugeMetricFamily("clicktrail_link_cache_entries", "Links cached", value=entries)
        flushes = CounterMetricFamily(
            "clicktrail_link_cache_flushes",
            "Times a worker stopped trusting its whole link cache, by reason: a link-change entry that "
            "does not decode (cache emptied), changes trimmed before they were read (all revalidated)",
            labels=["reason"],
        )
        for reason in FLUSH_REASONS:
            flushes.add_metric([reason], snap.get("cache_flushes", {}).get(reason, 0))
        yield flushes
        yield CounterMetricFamily(
            "clicktrail_link_changes_read",
            "Entries of the link-change stream read by the workers' link watchers (each drops its code)",
            value=snap.get("link_changes", 0),
        )
        dropped = CounterMetricFamily(RECORDS_DROPPED_METRIC, RECORDS_DROPPED_HELP, labels=["reason"])
        by_reason = snap.get("dropped", {})
        for reason in sorted({*DROP_REASONS, *by_reason}):
            dropped.add_metric([reason], by_reason.get(reason, 0))
        yield dropped
        yield GaugeMetricFamily(
            "clicktrail_link_cache_warming",
            "Workers still preloading their link cache (CLICKTRAIL_LINK_CACHE_PRELOAD_MAX_S)",
            value=snap.get("warming", 0),
        )
        yield CounterMetricFamily(
            "clicktrail_redirects_shortcut",
            "302s answered by the HTTP protocol itself for a cached plain link, without an ASGI request",
            value=snap.get("shortcut", 0),
        )
        yield GaugeMetricFamily(
            "clicktrail_link_cache_bytes",
            "Bytes of packed links cached, as counted against CLICKTRAIL_LINK_CACHE_BYTES",
            value=cache_bytes,
        )


def make_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)
