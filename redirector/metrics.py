"""Prometheus exposition. The redirect path keeps plain counters (stats.py); this collector reads them at
scrape time, so the hot path pays no metric-library cost. Other components register ordinary
prometheus_client metrics on the same per-process registry (never the global default one).

With `serve --workers N` each worker has its own registry and /metrics shows the worker that answered;
scrape each worker or run one worker per container (README, "Operating")."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from redirector.links import LinkCache
from redirector.stats import Histogram, RecorderStats, RedirectStats


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets = []
    cumulative = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    cumulative += hist.counts[-1]
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


class RedirectCollector:
    def __init__(
        self,
        redirects: RedirectStats,
        recorder: RecorderStats,
        cache: LinkCache,
        recorder_live: Callable[[], bool],
    ) -> None:
        self._redirects = redirects
        self._recorder = recorder
        self._cache = cache
        self._recorder_live = recorder_live

    def collect(self) -> Iterator[Metric]:
        redirects, recorder, cache = self._redirects, self._recorder, self._cache
        responses = CounterMetricFamily(
            "clicktrail_redirects",
            "Redirect-path responses by method and status",
            labels=["method", "status"],
        )
        for (method, status), count in sorted(redirects.responses.items()):
            responses.add_metric([method, str(status)], count)
        yield responses
        yield _histogram(
            "clicktrail_redirect_latency_seconds", "Time from request to response start", redirects.latency
        )
        yield CounterMetricFamily(
            "clicktrail_link_lookup_errors",
            "Link lookups that failed (Redis down, no cached copy)",
            value=redirects.lookup_errors,
        )
        clicks = CounterMetricFamily("clicktrail_clicks", "Clicks by outcome", labels=["outcome"])
        for outcome in ("committed", "spooled", "replayed", "lost"):
            clicks.add_metric([outcome], getattr(recorder, outcome))
        yield clicks
        yield _histogram("clicktrail_click_batch_size", "Clicks per recorder write", recorder.batches)
        failures = CounterMetricFamily(
            "clicktrail_recorder_redis_failures", "Failed Redis writes by error", labels=["error"]
        )
        for error, count in sorted(recorder.redis_failures.items()):
            failures.add_metric([error], count)
        yield failures
        yield GaugeMetricFamily(
            "clicktrail_recorder_live",
            "1 while clicks go to Redis, 0 while they are spooled",
            value=1 if self._recorder_live() else 0,
        )
        lookups = CounterMetricFamily("clicktrail_link_cache", "Link cache lookups", labels=["result"])
        lookups.add_metric(["hit"], cache.hits)
        lookups.add_metric(["miss"], cache.misses)
        yield lookups
        yield GaugeMetricFamily("clicktrail_link_cache_entries", "Links cached", value=len(cache))


def make_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)
