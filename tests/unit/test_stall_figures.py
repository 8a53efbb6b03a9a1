"""The open-loop benchmark's stall figures: the server's histograms scraped before and after a run,
subtracted, counted over thresholds, and bounded by bucket (benchmarks/openloop.py)."""

from __future__ import annotations

import pytest

from benchmarks.openloop import GC_METRIC, LAG_METRIC, stall_figures

BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, float("inf"))


def series(per_bucket: list[int], total_s: float) -> dict:
    """A scraped histogram from per-bucket (not cumulative) counts."""
    cumulative, buckets = 0, {}
    for bound, n in zip(BOUNDS, per_bucket, strict=True):
        cumulative += n
        buckets[bound] = cumulative
    return {"buckets": buckets, "count": cumulative, "sum": total_s}


@pytest.mark.parametrize(
    ("before", "after", "over", "p99", "worst"),
    [
        # Nothing before (a server that just started): every probe of the run counts.
        (None, [90, 5, 3, 1, 1, 0, 0, 0], (5, 1, 0), 5.0, 10.0),
        # The same server scraped twice: only what happened in between.
        ([90, 5, 3, 1, 1, 0, 0, 0], [180, 10, 6, 2, 1, 0, 1, 0], (5, 1, 1), 5.0, 50.0),
        # A stall past the last bound: the bound is unknown (inf), still counted over every threshold.
        (None, [99, 0, 0, 0, 0, 0, 0, 1], (1, 1, 1), 0.5, float("inf")),
        # An idle stretch with no probe at all late: no bound to give.
        (None, [0] * 8, (0, 0, 0), None, None),
    ],
)
def test_stalls_are_counted_between_the_scrapes(before, after, over, p99, worst) -> None:
    old = {LAG_METRIC: series(before, 0.1)} if before else {}
    new = {LAG_METRIC: series(after, 0.3)}
    figures = stall_figures(old, new)
    assert (figures["over_1ms"], figures["over_5ms"], figures["over_20ms"]) == over
    assert figures["probes"] == sum(after) - sum(before or [])
    assert (figures["lag_p99_le_ms"], figures["lag_max_le_ms"]) == (p99, worst)


def test_gc_pauses_by_generation_and_a_server_without_the_metrics() -> None:
    before = {LAG_METRIC: series([1] + [0] * 7, 0), GC_METRIC + "2": series([0] * 8, 0)}
    after = {LAG_METRIC: series([2] + [0] * 7, 0), GC_METRIC + "2": series([0, 0, 0, 1, 0, 0, 0, 0], 0.004)}
    assert stall_figures(before, after)["gc"] == {
        "2": {"collections": 1, "pause_total_ms": 4.0, "pause_max_le_ms": 5.0}
    }
    assert stall_figures({}, {}) is None
