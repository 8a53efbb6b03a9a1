"""Smoke run of the performance report (benchmarks/report.py --smoke), so that it cannot rot: every
section at tiny counts (about a minute), written into a temporary directory. It checks that the markdown
and the charts are produced and that every click check passed, never the timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import perfprofile
from benchmarks.attribution import CLICKHOUSE_URL
from benchmarks.openloop import TARGET_SHARE, TICK_S
from benchmarks.paired import profile_of
from benchmarks.report import main
from benchmarks.report_md import click_checks
from benchmarks.report_targets import _target_rows
from core.clickhouse import NativeClickHouse

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]

CHARTS = ("redirect-throughput.png", "redirect-latency.png", "open-loop-latency.png", "cost-growth.png",
          "memory.png")  # fmt: skip


@pytest.mark.timeout(300)
def test_report_smoke_writes_markdown_charts_and_passes_click_checks(tmp_path: Path) -> None:
    out = tmp_path / "REPORT.md"
    status = main(["--smoke", "--out", str(out), "--json-dir", str(tmp_path / "out")])

    (json_path,) = (tmp_path / "out").glob("report-*.json")
    result = json.loads(json_path.read_text())
    assert result["errors"] == {}
    assert status == 0
    checks = click_checks(result)
    # redirect (uniform and Zipf codes), the paired runs' three clicktrail sides (c/b, and both sides of
    # many/few), the open-loop maximum, four rates and the target's share again, perf's two open-loop runs,
    # the two backlog runs and the memory warm-up (with the runs on its full cache)
    assert len(checks) == 16, checks
    assert all(ok for _, ok in checks), checks
    ol = result["open_loop"]
    assert {p["share_of_max"] for p in ol["points"]} == {0.25, 0.5, 0.75, 0.9}
    (again,) = ol["target_repeats"]
    assert again["share_of_max"] == TARGET_SHARE and again["answered"] > 0
    assert (
        again["offered_rate_per_s"]
        == next(p for p in ol["points"] if p["share_of_max"] == TARGET_SHARE)["offered_rate_per_s"]
    )
    # perf sampled the worker in runs of its own (wrk at the maximum, the open loop at the target's share),
    # each profile of its own run's requests; no run the target is judged by was sampled.
    # The server's CPU a request is of its CPU seconds, not of the meter's window (openloop.server_cpu_us).
    assert all(p["server_cpu_s"] > 0 for p in ol["points"])
    made = ol["profile_runs"]
    assert made["point"]["share_of_max"] == TARGET_SHARE
    assert made["point"]["profile"]["server"]["requests"] == made["point"]["answered"]
    assert made["max_run"]["profile"]["server"]["requests"] == made["max_run"]["requests"]
    assert not any(key.startswith("profile") for run in [ol["max_run"], *ol["points"]] for key in run)
    assert perfprofile.compare_runs(made["point"], made["max_run"])["a_us"] > 0
    pairs = result["paired"]["pairs"]
    assert set(pairs) == {"c/b", "many/few"}
    for (run,) in pairs.values():
        # Both sides were driven in every slice, and each side's rate is of its own requests.
        assert len(run["a"]["slices_requests_per_s"]) == len(run["b"]["slices_requests_per_s"]) == 2
        assert run["a"]["requests"] > 0 and run["b"]["requests"] > 0 and run["ratio"] > 0
        # perf sampled both servers (bootstrap installs it): each side's profile is of its own requests.
        for side in ("a", "b"):
            profile = run["profile"][side]
            assert profile["requests"] == run[side]["requests"]
            assert any("_PyEval_EvalFrameDefault" in name for name in profile["functions"]), profile
        # The interpreter is grouped as such (a Python linked statically names its binary, not libpython).
        groups = {name for name, _, _ in profile_of([run])["groups"]}
        assert "interpreter loop (running Python bytecode)" in groups, groups
    assert result["memory"]["cache_entries"] == result["memory"]["links"]
    assert result["memory"]["clicks_buffered"] > 0
    assert set(result["memory"]["warm_cache_runs"]) == {"uniform", "zipf:1.1"}
    for throughput in (result["ingest"]["throughput"], result["ingest"]["two_ingesters"]):
        assert throughput["stored"] == throughput["clicks"]
        assert len(throughput["ingest_s_runs"]) == len(throughput["raw_tsv_s_runs"]) == 2
    # The ingester's stage profile of the same run, and the budget the target's row reads from it.
    stages = result["ingest"]["stages"]
    assert set(stages["stages_us_per_click"]) == {"decode", "build", "unique_flag", "serialise"}
    assert all(us > 0 for us in stages["stages_us_per_click"].values())
    assert "**Budget.**" in out.read_text()
    # each size by one process, then on the same load with lanes; the load dropped afterwards
    runs = result["attribution"]["runs"]
    assert [r["workers"] for r in runs] == [1, 2, 1, 2] and runs[0]["clicks"] == runs[1]["clicks"]
    left = NativeClickHouse(CLICKHOUSE_URL).execute("SELECT name FROM system.databases")
    assert not [name for (name,) in left if name.startswith("ct_report_attr_")]
    for run in result["attribution"]["runs"]:
        # the baseline is the fastest of the joins timed on the settled load
        assert len(run["bare_join_runs_s"]) == 3 and run["bare_join_s"] == min(run["bare_join_runs_s"])
        stages = run["stages"]
        # Each step was timed inside the run: every order was booked and its rows inserted.
        assert stages["book"]["cpu_s"] > 0 and stages["insert"]["wall_s"] > 0, stages
        assert stages["announce"]["cpu_s"] > 0 and stages["insert"]["cpu_s"] > 0, stages
        assert all(t["wall_s"] >= 0 for t in stages.values() if t["wall_s"] is not None), stages
        assert stages["run"]["wall_s"] == run["attributor_s"], stages
        # the loop thread's CPU is part of the process's, and holds the pure steps run in it
        assert stages["book"]["cpu_s"] + stages["announce"]["cpu_s"] <= stages["loop"]["cpu_s"], stages
        assert 0 < stages["loop"]["cpu_s"] <= stages["run"]["cpu_s"], stages
        assert (
            0 < stages["machine"]["wall_s"] <= 1
            and stages["machine"]["cpu_s"] >= stages["run"]["cpu_s"] * 0.9
        )
        assert run["gc"]["2"]["count"] >= 1, run["gc"]  # the one full pass at the run's end
        # The servers' CPU is part of the machine's; the loop's idle time is part of the run's wall.
        assert stages["clickhouse"]["cpu_s"] > 0 and stages["redis"]["cpu_s"] >= 0, stages
        assert stages["clickhouse"]["cpu_s"] + stages["run"]["cpu_s"] <= stages["machine"]["cpu_s"] * 1.1
        # (a join of the smoke's 50,000 clicks can take less than one 10 ms tick of CPU accounting)
        assert run["bare_join_cpu_s"]["clickhouse"] >= 0 and run["cores"] >= 1, run
        assert 0 < sum(run["waits"].values()) < run["attributor_s"], run["waits"]

    text = out.read_text()
    assert "## Headline" in text and "Click checks: 16 of 16 passed" in text
    assert "## Targets (issue 16)" in text and "## 1b. Paired ratios" in text
    assert "### Profile of c/b" in text and "### Profile of many/few" in text
    assert "### Profile of the open loop" in text
    # (the table shows a row's figures only when its target is not met)
    (row,) = [r for r in _target_rows(result) if r and r[0].startswith("open-loop p99")]
    assert "perf profile (section 2)" in row[3], row
    assert "in each of 2 runs" in row[0]
    assert f"The target's share ({TARGET_SHARE:.0%}) was run 1 more time right after" in text
    assert f"wakes at most every {TICK_S * 1000:g} ms" in text
    assert "| 3 x bare join |" in text and "| full (gen 2) |" in text
    assert "| clicks | idle s in all | the largest: steps in flight, s |" in text
    for name in CHARTS:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](report/{name})" in text
