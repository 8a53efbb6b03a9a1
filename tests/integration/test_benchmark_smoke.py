"""Smoke run of the redirect benchmark (benchmarks/redirect.py), so that it cannot rot: a second of wrk per
system, a few links, one worker. It checks the click accounting, never the speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.redirect import BenchOptions, format_table, run_benchmark
from benchmarks.redis_server import private_redis
from benchmarks.scenarios import measure_open_loop
from benchmarks.systems import seed_links

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_redirect_benchmark_records_exactly_the_302s(tmp_path: Path) -> None:
    opts = BenchOptions(duration_s=1, connections=8, threads=2)
    result = run_benchmark([200], [1], opts, work_root=tmp_path, log=lambda _: None)

    run = result["runs"][0]
    assert not run["errors"]
    check = run["clicktrail"]["check"]
    assert check["passed"], check
    assert check["redirects_302"] > 0
    assert check["302_without_click"] == 0
    assert check["duplicates_in_stream"] == 0
    assert check["clicks_recorded"] == check["redirects_302"] + check["abandoned_at_cut_off"]
    # Every request of the baselines found its code: the Lua and Python code generators agree.
    assert set(run["nginx"]["statuses"]) == {302}
    assert set(run["bare"]["statuses"]) == {302}
    assert {"c/a", "c/b"} <= run["ratios"].keys()
    assert "clicktrail" in format_table(result)


def test_smart_link_shape_records_exactly_the_302s(tmp_path: Path) -> None:
    """`--link-shape smart` (5 rules, 2 variants) runs, and every 302 carries a click id recorded once."""
    opts = BenchOptions(duration_s=1, connections=8, threads=2, link_shape="smart")
    result = run_benchmark([200], [1], opts, systems=("clicktrail",), work_root=tmp_path, log=lambda _: None)
    check = result["runs"][0]["clicktrail"]["check"]
    assert check["passed"] and check["redirects_302"] > 0 and check["302_without_click"] == 0, check


def test_escape_scenarios_check_their_clicks(tmp_path: Path) -> None:
    """The in-app scenario: every answer is the escape page, and its click ids (read from the pages) are
    the recorded clicks; the ordinary browser on the same links gets 302s."""
    opts = BenchOptions(duration_s=1, connections=8, threads=2)
    systems = ("clicktrail", "escape-plain", "escape-inapp")
    result = run_benchmark([200], [1], opts, systems=systems, work_root=tmp_path, log=lambda _: None)

    run = result["runs"][0]
    assert not run["errors"]
    assert set(run["escape-inapp"]["statuses"]) == {200}
    assert set(run["escape-plain"]["statuses"]) == {302}
    for name in systems:
        check = run[name]["check"]
        assert check["passed"] and check["redirects_302"] > 0, (name, check)
    assert {"p/c", "e/c"} <= run["ratios"].keys()
    assert "esc. inapp" in format_table(result)


@pytest.mark.clickhouse
def test_dashboard_scenario_loads_pages_while_checking_clicks(tmp_path: Path) -> None:
    """`--systems dash`: one round of (c) then (d), two signed-in clients loading dashboard pages during
    (d)'s wrk run; every page answers 200, every 302 of both carries a click recorded once; d/c reported."""
    opts = BenchOptions(duration_s=1, connections=8, threads=2, dash_rounds=1)
    result = run_benchmark([200], [1], opts, systems=("dash",), work_root=tmp_path, log=lambda _: None)

    run = result["runs"][0]
    assert not run["errors"], run["errors"]
    dash = run["dash"]["dashboard"]
    assert dash["clients"] == 2 and dash["pages_loaded"] > 0, dash
    assert dash["page_errors"] == 0, dash["first_errors"]
    check = run["dash"]["check"]
    assert check["passed"] and check["redirects_302"] > 0, check
    assert len(run["dash"]["rounds"]) == 1 and run["dash"]["baseline_requests_per_s"] > 0
    assert "d/c" in run["ratios"]
    assert "+dashboard" in format_table(result)


def test_open_loop_run_reports_the_servers_stalls(tmp_path: Path) -> None:
    """Report section 2's measurement (benchmarks/scenarios.measure_open_loop): every click checked, and the
    server's loop lag and GC pauses scraped around the run, with the client's own late wake-ups."""
    with private_redis(tmp_path / "redis") as url:
        seed_links(url, 200)
        point = measure_open_loop(
            tmp_path, redis_url=url, links=200, rate=500, duration_s=1.5, connections=8, opts=BenchOptions()
        )
    assert point["check"]["passed"], point["check"]
    stalls = point["stalls"]
    # A 10 ms probe over the run and its drain: about 100 per second of it.
    assert stalls["probes"] >= 100, stalls
    assert stalls["over_1ms"] >= stalls["over_5ms"] >= stalls["over_20ms"] >= 0
    assert set(stalls["gc"]) == {"0", "1", "2"}
    assert stalls["recorder_writes"] > 0 and stalls["clicks_per_write"] >= 1
    assert {"over_1ms", "over_5ms", "over_20ms", "max_ms"} <= point["client_stalls"].keys()
    assert 0 <= point["run_queue_wait"]["server"] < 1
