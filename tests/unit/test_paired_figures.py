"""The paired redirect benchmark's arithmetic (benchmarks/paired.py) and the report's issue-16 target rows
(benchmarks/report_md.py), from hand-made slice figures: a side's rate is its requests over its summed
seconds (not a mean of slice rates), a ratio is of those, and a target is met only where every run does."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.paired import Pair, Side, figures, pairs_for
from benchmarks.report_targets import _target_rows, targets_section
from benchmarks.systems import BenchOptions

PAIR = Pair("c/b", ("clicktrail", 1000), ("bare", 1000))


def side(system: str, slices: list[tuple[int, float, float]], check: bool | None = None) -> Side:
    """`slices`: (requests, seconds, server cores) of each wrk slice."""
    made = Side(system, 1000, 0, {}, ids_dir=Path("/nonexistent") if check is not None else None)
    for requests, seconds, cores in slices:
        made.slices.append(
            {
                "requests": requests,
                "duration_s": seconds,
                "requests_per_s": requests / seconds,
                "cores_used": {"server": cores},
                "latency_ms": {"p99": 5.0},
                "load_average_before": [1.0, 1.0, 1.0],
                "non_2xx_3xx": 0,
                "command": "wrk",
            }
        )
    if check is not None:
        made.check = {"passed": check}
    return made


def test_a_sides_rate_is_its_requests_over_its_seconds() -> None:
    # A slow slice of A (1 s at 1,000/s) next to a fast one (3 s at 3,000/s): 10,000 requests in 4 s, not
    # the mean of the two rates (2,000/s).
    a = side("clicktrail", [(1_000, 1.0, 1.0), (9_000, 3.0, 1.0)], check=True)
    b = side("bare", [(2_000, 1.0, 1.0), (10_000, 3.0, 0.5)])
    run = figures(PAIR, a, b, BenchOptions(), 2)
    assert run["a"]["requests_per_s"] == 2_500
    assert run["b"]["requests_per_s"] == 3_000
    assert run["ratio"] == pytest.approx(2_500 / 3_000, abs=1e-3)
    assert run["slice_ratios"] == [0.5, 0.9]
    # Per server CPU-second: A used 4 CPU-s for 10,000, B 2.5 CPU-s for 12,000.
    assert run["ratio_per_server_cpu_s"] == pytest.approx((10_000 / 4) / (12_000 / 2.5), abs=1e-3)
    assert run["met"] is True and run["target"] == 0.70
    assert run["clicks_checked"] is True


@pytest.mark.parametrize(
    ("a_requests", "check", "met", "checked"),
    [
        (6_999, True, False, True),  # 0.6999: under the target
        (7_000, True, True, True),  # exactly the target
        (9_000, False, False, False),  # fast, but a click check failed: no figure of clicktrail
    ],
)
def test_target_and_click_check_per_run(a_requests: int, check: bool, met: bool, checked: bool) -> None:
    a = side("clicktrail", [(a_requests, 1.0, 1.0)], check)
    run = figures(PAIR, a, side("bare", [(10_000, 1.0, 1.0)]), BenchOptions(), 1)
    assert (run["met"], run["clicks_checked"]) == (met, checked)


def test_a_pair_with_no_clicktrail_side_checked_is_not_passed() -> None:
    run = figures(PAIR, side("bare", [(1, 1.0, 1.0)]), side("bare", [(1, 1.0, 1.0)]), BenchOptions(), 1)
    assert run["clicks_checked"] is False


def test_the_many_links_pair_is_left_out_when_many_is_few() -> None:
    assert [p.name for p in pairs_for(("c/b", "many/few"), 1000, 1000)] == ["c/b"]
    assert [p.name for p in pairs_for(("many/few",), 1000, 10_000)] == ["many/few"]


def _paired_result(ratios: dict[str, list[float]]) -> dict:
    def run(name: str, ratio: float) -> dict:
        target = {"c/b": 0.70, "many/few": 0.85}[name]
        met = ratio is not None and ratio >= target
        return {"ratio": ratio, "ratio_per_server_cpu_s": ratio, "met": met, "clicks_checked": True}

    return {"paired": {"pairs": {name: [run(name, r) for r in rs] for name, rs in ratios.items()}}}


@pytest.mark.parametrize(
    ("ratios", "met"),
    [
        ({"c/b": [0.71, 0.70, 0.90]}, True),
        ({"c/b": [0.71, 0.69, 0.90]}, False),  # one run of three under
        ({"c/b": [0.90, 0.90]}, False),  # fewer than the three runs the target names
        ({"many/few": [0.86]}, True),
        ({"many/few": [0.86, 0.84]}, False),
        ({"c/b": [0.90, 0.90, None]}, False),  # a run with no figure (B answered nothing): rendered, not met
    ],
)
def test_a_paired_target_is_met_only_by_every_run(ratios: dict, met: bool) -> None:
    (row,) = [row for row in _target_rows(_paired_result(ratios)) if row]
    assert row[2] is met


def test_a_run_whose_clicks_failed_is_named_in_the_targets_table() -> None:
    result = _paired_result({"c/b": [0.90, 0.90, 0.90]})
    result["paired"]["pairs"]["c/b"][1] |= {"clicks_checked": False, "met": False}
    (row,) = [row for row in _target_rows(result) if row]
    assert row[2] is False and "click check failed in run(s) 2" in row[3]
    assert any("| not met |" in line for line in targets_section(result))
