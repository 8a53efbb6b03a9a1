"""Event-loop stalls and garbage-collector pauses, measured in the worker itself: a request that waits in
an open-loop client's queue waited for *something* in the server, and these say whether it was the loop
being blocked (by one long callback, a big batch, a collection) rather than the work per request.

The lag probe is a timer due every LAG_INTERVAL_S that records how much later than asked it ran: the loop
cannot run a timer while a callback holds it, so the lateness is the stall (uvloop's timers have a 1 ms
granularity, so lags under about 1 ms are timer rounding, not stalls). A stall shorter than the interval
is caught only if the timer falls due inside it, and then as its remaining part: the histogram counts
every stall of 10 ms or more, and a sample of the shorter ones. Cost, measured on the 2-core benchmark
machine: an idle worker pays 50-75 µs per wake-up (the kernel's, mostly), 0.5-0.7 % of a core; a busy
loop is awake anyway and pays the callback alone, 2.7 µs per 10 ms (0.03 % of a core). A process that
was not given a core shows here too (the timer is late all the same): the benchmark reads the run-queue
wait beside it to tell a loop held by its own work from one that was descheduled. GC pauses come from
`gc.callbacks` (start and stop of each collection, by generation).

Both are plain counters (stats.Histogram), turned into Prometheus histograms at scrape time, like the
redirect path's own: `clicktrail_event_loop_lag_seconds`, `clicktrail_gc_pause_seconds{generation}`.
Per process: with `serve --workers N` a scrape shows the worker that answers it (a stall is a worker's)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

from prometheus_client.core import HistogramMetricFamily, Metric

from redirector.stats import Histogram

LAG_INTERVAL_S = 0.010
# Seconds: from timer rounding (0.5 ms) to a stall that times requests out.
LAG_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
GENERATIONS = (0, 1, 2)


class GcPauses:
    """Garbage-collector pauses of this process by generation (2: full), from `gc.callbacks`: start(),
    close(). The worker's StallMonitor exports them; benchmarks/attribution.py counts a run's with it."""

    def __init__(self) -> None:
        self.by_generation = {generation: Histogram(LAG_BUCKETS_S) for generation in GENERATIONS}
        self._started = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)

    def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.by_generation[info["generation"]].observe(time.perf_counter() - self._started)


class StallMonitor:
    """The loop-lag probe and the GC pause hook of one process: start() in the worker's loop, close()."""

    def __init__(self, interval_s: float = LAG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.lag = Histogram(LAG_BUCKETS_S)
        self._gc = GcPauses()
        self.gc_pauses = self._gc.by_generation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._asked = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._asked = time.perf_counter()
        self._timer = self._loop.call_later(self.interval_s, self._tick)
        self._gc.start()

    async def close(self) -> None:
        self._gc.close()
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        # A bare timer callback rather than a task around asyncio.sleep: half the cost per wake-up.
        now = time.perf_counter()
        self.lag.observe(max(0.0, now - self._asked - self.interval_s))
        self._asked = now
        self._timer = self._loop.call_later(self.interval_s, self._tick)

    def collect(self) -> Iterator[Metric]:
        yield _histogram(
            "clicktrail_event_loop_lag_seconds",
            "How late the worker's event loop ran a timer: the time a callback held the loop",
            [([], self.lag)],
        )
        yield _histogram(
            "clicktrail_gc_pause_seconds",
            "Garbage-collector pauses of the worker by generation",
            [([str(g)], hist) for g, hist in self.gc_pauses.items()],
            labels=["generation"],
        )


def _histogram(name: str, doc: str, series: list, labels: list[str] | None = None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, hist in series:
        buckets, cumulative = [], 0
        for bound, count in zip(hist.bounds, hist.counts, strict=False):
            cumulative += count
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + hist.counts[-1]))
        family.add_metric(values, buckets, sum_value=hist.total)
    return family
