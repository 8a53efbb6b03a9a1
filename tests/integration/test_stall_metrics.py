"""The worker measures its own event-loop stalls and GC pauses (redirector/stall.py): a callback that holds
the loop, and a full collection, show on /metrics in the histograms the open-loop benchmark reads."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.apphelp import running_app

pytestmark = pytest.mark.redis

BLOCK_S = 0.05


def buckets(text: str, name: str, **labels: str) -> dict[float, float]:
    """Cumulative counts by upper bound of one histogram series on /metrics."""
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {
                float(s.labels["le"]): s.value
                for s in family.samples
                if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items())
            }
    raise AssertionError(f"{name} not on /metrics")


def test_a_blocked_loop_and_a_full_collection_are_on_metrics(settings) -> None:
    async def scenario() -> tuple[str, str]:
        async with running_app(settings) as (_, client):
            await asyncio.sleep(0.05)  # the probe is asleep in its interval
            before = (await client.get("/metrics")).text
            time.sleep(BLOCK_S)  # a callback that holds the loop, as a big batch or a slow parse would
            gc.collect()
            await asyncio.sleep(0.05)  # the probe wakes, late, and records it
            return before, (await client.get("/metrics")).text

    before, after = asyncio.run(scenario())
    lag_before = buckets(before, "clicktrail_event_loop_lag_seconds")
    lag_after = buckets(after, "clicktrail_event_loop_lag_seconds")
    # Exactly the stall is new above 20 ms (a loaded machine may add more, never less).
    late = {le: lag_after[le] - lag_before[le] for le in lag_after}
    assert late[float("inf")] - late[0.02] >= 1, late
    assert late[float("inf")] - late[1.0] == 0, late
    gen2_before = buckets(before, "clicktrail_gc_pause_seconds", generation="2")
    gen2_after = buckets(after, "clicktrail_gc_pause_seconds", generation="2")
    assert gen2_after[float("inf")] - gen2_before[float("inf")] >= 1
