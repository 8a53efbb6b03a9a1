"""The ingest target's budget in the performance report (benchmarks/report_targets.py): what 0.5 x the raw
insert allows, against the stages' Python and the machine's CPU, from a run's figures."""

from __future__ import annotations

import pytest

from benchmarks.report_md import _ingest_stages
from benchmarks.report_targets import _ingest_target, allowance_word, ingest_budget


def _throughput(clicks: int, raw_s: float, machine_us: float, ratio: float) -> dict:
    return {
        "clicks": clicks,
        "raw_tsv_s": raw_s,
        "ratio_to_raw": ratio,
        "cores": 2,
        "ingest_clicks_per_s": 100_000,
        "ingest_cpu_us_per_click": 6.2,
        "ingest_redis_cpu_us_per_click": 2.0,
        "ingest_machine_cpu_us_per_click": machine_us,
        "raw_machine_cpu_us_per_click": 2.5,
    }


STAGES = {
    "clicks": 400_000,
    "batch_size": 100_000,
    "stages_us_per_click": {"decode": 1.28, "build": 2.88, "unique_flag": 1.17, "serialise": 0.77},
    "insert_wall_us_per_click": {"driver_blocks_of_100000": 6.76, "raw_tsv_one_insert": 3.36},
}


@pytest.mark.parametrize(
    ("raw_s", "two_raw_s", "one_wall_us", "machine_us"),
    [
        # 2,000,000 clicks in 4.71 s raw: 2.355 µs a click, so 0.5 allows 4.71 µs; two cores 2 x 4.71.
        (4.71, 4.81, 4.71, 9.62),
        (2.0, 2.0, 2.0, 4.0),
        (10.0, 5.0, 10.0, 10.0),
    ],
)
def test_budget_is_twice_the_raw_wall_a_click_and_cores_times_that_of_machine_cpu(
    raw_s: float, two_raw_s: float, one_wall_us: float, machine_us: float
) -> None:
    figures = {
        "throughput": _throughput(2_000_000, raw_s, 11.3, 0.3),
        "two_ingesters": _throughput(2_000_000, two_raw_s, 12.6, 0.37),
        "stages": STAGES,
    }
    budget = ingest_budget(figures)
    assert budget == {
        "one_wall_us": one_wall_us,
        "stages_us": 6.1,
        "largest_stage": "build",
        "machine_us": machine_us,
        "two_machine_us": 12.6,
    }


def test_no_budget_without_the_stage_profile_and_none_of_the_two_ingesters_bound_without_them() -> None:
    assert ingest_budget({"throughput": _throughput(1_000, 1.0, 10.0, 0.3)}) is None
    budget = ingest_budget({"throughput": _throughput(1_000_000, 2.0, 10.0, 0.3), "stages": STAGES})
    assert budget is not None and "machine_us" not in budget and budget["one_wall_us"] == 4.0


def test_the_target_row_and_section_state_the_budget_with_every_stage() -> None:
    figures = {
        "throughput": _throughput(2_000_000, 4.71, 11.3, 0.3),
        "two_ingesters": _throughput(2_000_000, 4.81, 12.6, 0.37),
        "stages": STAGES,
    }
    _, value, met, why = _ingest_target(figures)
    assert (value, met) == ("0.30 (two ingesters 0.37)", False)
    assert "0.5 allows one ingester 4.71 µs of wall a click" in why
    assert "6.1 µs of Python" in why and "9.62 µs of machine CPU a click" in why
    # The stages (6.1) pass the one-ingester allowance (4.71): the row says which side each figure is on.
    assert "), over the allowance, and it used 6.2 µs of CPU a click in the drain" in why
    for name, us in STAGES["stages_us_per_click"].items():
        assert f"{name} {us}" in why
    text = "\n".join(_ingest_stages(figures))
    assert "| **the stages' sum (Python under one GIL)** | **6.1** |" in text
    assert "driver blocks of 100000 6.76" in text and "two ingesters spent 12.6 µs a click" in text
    # A run without the profile (older JSON) renders as before: no stage table.
    assert _ingest_stages({"throughput": figures["throughput"]}) == []


@pytest.mark.parametrize(
    ("spent", "allowed", "word"),
    [(6.1, 4.71, "over the allowance"), (4.29, 6.56, "within it"), (11.56, 11.56, "within it")],
)
def test_allowance_word(spent: float, allowed: float, word: str) -> None:
    assert allowance_word(spent, allowed) == word
