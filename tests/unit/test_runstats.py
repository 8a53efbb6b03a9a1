"""The attributor's run statistics: the hash fields one run adds, and the metrics read back from them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from attribution.runstats import StatsCollector, families, increments


def samples(stats: dict) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(StatsCollector(lambda: stats))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("result", "outcomes", "kinds", "expected"),
    [
        ("ok", {}, {}, {"runs:ok": 1}),
        ("busy", {}, {}, {"runs:busy": 1}),
        (
            "ok",
            {"credited": 3, "no_click": 1, "bot": 0},
            {"accrual": 4, "none": 1},
            {"runs:ok": 1, "orders:credited": 3, "orders:no_click": 1, "rows:accrual": 4, "rows:none": 1},
        ),
        (
            "stopped",
            {"credited": 2},
            {"accrual": 2},
            {"runs:stopped": 1, "orders:credited": 2, "rows:accrual": 2},
        ),
    ],
)
def test_increments(result, outcomes, kinds, expected) -> None:
    assert increments(result, outcomes, kinds) == expected


def test_unknown_result_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown run result"):
        increments("maybe", {}, {})


def test_never_run_exports_every_family_at_zero() -> None:
    got = samples({})
    for result in ("ok", "stopped", "busy", "failed"):
        assert got[("clicktrail_attributor_runs_total", (("result", result),))] == 0
    assert got[("clicktrail_attributor_last_success_timestamp_seconds", ())] == 0
    assert got[("clicktrail_attributor_run_seconds_total", ())] == 0
    names = {f.name for f in families({})}
    assert {"clicktrail_attributor_orders", "clicktrail_attributor_ledger_rows"} <= names
    # at 0 before the first, so that the alert on its increase sees the first one
    assert got[("clicktrail_attributor_dead_letters_total", (("reason", "undecodable_staged"),))] == 0


def test_hash_fields_become_samples() -> None:
    got = samples(
        {
            b"runs:ok": b"5",
            b"runs:failed": b"1",
            b"orders:credited": b"7",
            b"orders:expired": b"2",
            b"rows:approval": b"4",
            b"dead:undecodable_staged": b"2",
            b"seconds": b"12.5",
            b"last_run_ms": b"1764570000500",
            b"last_success_ms": b"1764570000000",
            b"last_duration_ms": b"1500",
        }
    )
    assert got[("clicktrail_attributor_runs_total", (("result", "ok"),))] == 5
    assert got[("clicktrail_attributor_runs_total", (("result", "failed"),))] == 1
    assert got[("clicktrail_attributor_orders_total", (("outcome", "credited"),))] == 7
    assert got[("clicktrail_attributor_orders_total", (("outcome", "expired"),))] == 2
    assert got[("clicktrail_attributor_ledger_rows_total", (("kind", "approval"),))] == 4
    assert got[("clicktrail_attributor_dead_letters_total", (("reason", "undecodable_staged"),))] == 2
    assert got[("clicktrail_attributor_run_seconds_total", ())] == 12.5
    assert got[("clicktrail_attributor_last_run_duration_seconds", ())] == 1.5
    assert got[("clicktrail_attributor_last_run_timestamp_seconds", ())] == 1764570000.5
    assert got[("clicktrail_attributor_last_success_timestamp_seconds", ())] == 1764570000.0


def test_a_garbled_field_reads_as_zero_not_a_failed_scrape() -> None:
    got = samples({"runs:ok": "many", "seconds": ""})
    assert got[("clicktrail_attributor_runs_total", (("result", "ok"),))] == 0


run_results = st.sampled_from(["ok", "stopped", "busy", "failed"])
counts = st.dictionaries(st.sampled_from(["credited", "no_click", "bot", "parked"]), st.integers(0, 10**6))


@given(st.lists(st.tuples(run_results, counts), max_size=30))
def test_counters_add_up_and_never_go_down(runs) -> None:
    """Whatever runs happen, the exported counters are the sums of what the runs added, and each run only
    raises them (a counter that went down would read as a reset in rate())."""
    stats: dict[str, int] = {}
    previous: dict[tuple[str, tuple], float] = {}
    for result, outcomes in runs:
        for name, n in increments(result, outcomes, {}).items():
            stats[name] = stats.get(name, 0) + n
        now = samples({k: str(v) for k, v in stats.items()})
        for key, value in previous.items():
            assert now.get(key, 0) >= value, key
        previous = now
    for result in ("ok", "stopped", "busy", "failed"):
        ran = sum(1 for r, _ in runs if r == result)
        assert previous.get(("clicktrail_attributor_runs_total", (("result", result),)), 0) == ran
    credited = sum(o.get("credited", 0) for _, o in runs)
    assert previous.get(("clicktrail_attributor_orders_total", (("outcome", "credited"),)), 0) == credited
