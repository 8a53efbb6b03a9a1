"""The performance report: every benchmark with its same-run baselines, in one command, written to
benchmarks/REPORT.md with PNG charts in benchmarks/report/ (raw figures: benchmarks/out/report-<time>.json).

    .venv/bin/python -m benchmarks.report [--quick | --smoke] [--out benchmarks/REPORT.md]
    .venv/bin/python -m benchmarks.report --from-json benchmarks/out/report-<time>.json   # re-render only

Sections, in order (each later one uses figures of the earlier ones):
  1. redirect    benchmarks/redirect.py: nginx static 302 vs bare ASGI 302 vs clicktrail, per links and
                 workers, wrk (closed loop), with the exact click check;
  1b. paired     benchmarks/paired.py: the redirect's two ratios of issue 16 (clicktrail / bare ASGI, many
                 links / few links) from two servers up at once, wrk alternating between them in slices;
  2. open_loop   clicktrail (1 worker, 1k links) at 25/50/75/90 % of its maximum (wrk, measured again first),
                 open-loop client (openloop.py), latency from the scheduled send;
  3. backlog     clicktrail with an empty stream vs a stream holding N unconsumed clicks;
  4. memory      RSS of one worker with every link cached; Redis bytes per buffered click;
  5. ingest      benchmarks/ingest.py: ingester (one, then two) vs raw clickhouse-client insert, lag at
                 5,000 clicks/s;
  6. attribution benchmarks/attribution.py at two clicks-table sizes, each vs a bare ClickHouse join.
A section that fails is recorded with its error; the others still run. The JSON is written after every
section, so an interrupted run can still be rendered (--from-json). Exit status 1 if any section failed
or any click check did not pass.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import attribution, ingest, ingest_stages, paired
from benchmarks.openloop import TARGET_SHARE
from benchmarks.redirect import machine, run_benchmark
from benchmarks.redis_server import private_redis
from benchmarks.report_md import click_checks, render
from benchmarks.report_targets import CB_RUNS
from benchmarks.scenarios import measure_backlog, measure_memory, measure_open_loop
from benchmarks.systems import BenchOptions, measure_clicktrail, seed_links

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
OPEN_LOOP_SHARES = (0.25, 0.50, TARGET_SHARE, 0.90)
OPEN_LOOP_LINKS = 1000
# Enough keep-alive connections that the client's pool is not the limit at 90 % of the maximum.
OPEN_LOOP_CONNECTIONS = 128


@dataclass(frozen=True)
class Mode:
    name: str
    wrk_s: float  # per system and configuration
    links: tuple[int, ...]
    workers: tuple[int, ...]
    open_loop_s: float  # per offered rate
    backlog_clicks: int
    memory_links: int
    ingest_clicks: int
    lag_s: float
    attribution: tuple[tuple[int, int], ...]  # (clicks, orders) per table size
    paired_links: tuple[int, int] = (1000, 1_000_000)  # (few, many) of benchmarks/paired.py
    paired_slices: int = 10  # wrk slices per side
    paired_slice_s: int = 2
    paired_repeat: int = CB_RUNS  # issue 16: "in each of three runs"
    # perf samples both servers of every paired run (the same-run profile behind each ratio) and the open
    # loop's worker at wrk's maximum and at the target's share of it (perfprofile.py)
    profile: bool = True
    # Open-loop runs at the target's share after the first (same maximum, same server settings): at 75 %
    # one run's p99 is a draw from a wide spread, so the target is judged by every one of them.
    target_repeats: int = 2
    # Clicks of the ingester's stage profile (benchmarks/ingest_stages.py), in batches of the production
    # size at most: the same-run profile behind the ingest target's row.
    stage_clicks: int = 400_000
    stage_rounds: int = 3


MODES = {
    "full": Mode(
        "full",
        10,
        (1000, 1_000_000),
        (1, 2),
        10,
        1_000_000,
        1_000_000,
        2_000_000,
        30,
        ((10_000_000, 100_000), (50_000_000, 100_000)),
    ),
    "quick": Mode(
        "quick",
        3,
        (1000, 100_000),
        (1,),
        4,
        100_000,
        100_000,
        100_000,
        5,
        ((500_000, 5_000), (2_000_000, 5_000)),
        (1000, 100_000),
        4,
        1,
        2,
        target_repeats=1,
        stage_clicks=100_000,
    ),
    "smoke": Mode(
        "smoke",
        1,
        (200,),
        (1,),
        1.5,
        5_000,
        5_000,
        10_000,
        2,
        ((50_000, 1_000), (200_000, 1_000)),
        (200, 2_000),
        2,
        1,
        1,
        target_repeats=1,
        stage_clicks=10_000,
        stage_rounds=1,
    ),
}


def run_report(mode: Mode, command: str, save, log=print, work_root: Path | None = None) -> dict:
    """Every section in order; `save(result)` is called after each one."""
    opts = BenchOptions(duration_s=mode.wrk_s)
    result: dict = {"mode": asdict(mode), "command": command, "machine": machine(), "errors": {}}
    result["machine"]["clickhouse"] = clickhouse_version()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clicktrail-report-", dir=work_root) as tmp:
        work = Path(tmp)
        sections = (
            ("redirect", lambda: _redirect(mode, opts, work, log)),
            ("paired", lambda: _paired(mode, opts, work, log)),
            ("open_loop", lambda: _open_loop(mode, opts, work, result, log)),
            ("backlog", lambda: _backlog(mode, opts, work, log)),
            ("memory", lambda: _memory(mode, opts, work, result, log)),
            ("ingest", lambda: _ingest(mode, log)),
            ("attribution", lambda: _attribution(mode, log)),
        )
        for name, section in sections:
            log(f"== {name} ({time.monotonic() - started:.0f} s in) ==")
            section_started = time.monotonic()
            try:
                result[name] = section()
            except Exception as exc:  # recorded in the report and the exit status
                result["errors"][name] = f"{type(exc).__name__}: {exc}"
                log(f"  FAILED: {result['errors'][name]}\n{traceback.format_exc()}")
            result.setdefault("section_seconds", {})[name] = round(time.monotonic() - section_started, 1)
            save(result)
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def clickhouse_version() -> str:
    out = subprocess.run(
        ["clickhouse-client", "-q", "SELECT version()"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def _redirect(mode: Mode, opts: BenchOptions, work: Path, log) -> dict:
    redirect = run_benchmark(list(mode.links), list(mode.workers), opts, work_root=work, log=log)
    redirect.pop("machine")  # the report's own, taken at its start
    return redirect


def _paired(mode: Mode, opts: BenchOptions, work: Path, log) -> dict:
    few, many = mode.paired_links
    return paired.run_all(
        paired.PAIRS, few, many, opts, slices=mode.paired_slices, slice_s=mode.paired_slice_s,
        repeat=mode.paired_repeat, work_root=work, profile=mode.profile, log=log,
    )  # fmt: skip


def _max_rps(result: dict, links: int) -> float:
    for run in result["redirect"]["runs"]:
        if (
            run["links"] == links
            and run["workers"] == 1
            and run.get("mix", "uniform") == "uniform"
            and ("clicktrail" in run)
        ):
            return run["clicktrail"]["requests_per_s"]
    raise RuntimeError(f"no clicktrail figure for {links} links, 1 worker in the redirect section")


def _open_loop(mode: Mode, opts: BenchOptions, work: Path, result: dict, log) -> dict:
    """The maximum is measured again right before (wrk, same server settings, same private Redis): one
    short closed-loop run on a shared machine is noisy, and the offered rates are shares of it."""
    links = min(mode.links)
    points = []
    with private_redis(work / "open-loop-redis") as redis_url:
        seed_links(redis_url, links)
        log(f"  maximum: clicktrail, 1 worker, {links:,} links, wrk ...")
        closed = measure_clicktrail(
            work / "open-loop-max", redis_url=redis_url, workers=1, links=links, opts=opts
        )
        maximum = closed["requests_per_s"]

        def run_at(share: float, name: str) -> dict:
            point = measure_open_loop(
                work / name,
                redis_url=redis_url,
                links=links,
                rate=round(maximum * share),
                duration_s=mode.open_loop_s,
                connections=OPEN_LOOP_CONNECTIONS,
                opts=opts,
            )
            return point | {"share_of_max": share}

        for share in OPEN_LOOP_SHARES:
            log(f"  open loop at {round(maximum * share):,}/s ({share:.0%} of {maximum:,.0f}) ...")
            points.append(run_at(share, f"open-loop-{share}"))
        repeats = []
        for n in range(2, mode.target_repeats + 2):
            rate, runs = round(maximum * TARGET_SHARE), mode.target_repeats + 1
            log(f"  open loop at {rate:,}/s again: run {n} of {runs} at {TARGET_SHARE:.0%} ...")
            repeats.append(run_at(TARGET_SHARE, f"open-loop-{TARGET_SHARE}-run-{n}"))
        if mode.profile:
            log(f"  profile: wrk at the maximum, then the open loop at {TARGET_SHARE:.0%} ...")
            profile_runs = _open_loop_profile_runs(mode, opts, work, redis_url, links, maximum)
    return {
        "links": links,
        "max_requests_per_s": maximum,
        "max_run": closed,
        "section_1_requests_per_s": _max_rps(result, links) if "redirect" in result else None,
        "connections": OPEN_LOOP_CONNECTIONS,
        "points": points,
        "target_repeats": repeats,
        **({"profile_runs": profile_runs} if mode.profile else {}),
    }


def _open_loop_profile_runs(
    mode: Mode, opts: BenchOptions, work: Path, redis_url: str, links: int, maximum: float
) -> dict:
    """perf's own two runs, after the target's and back to back: wrk at the maximum, then the open loop at
    the target's share of the maximum measured above. Sampling costs the worker some CPU, and at 75 % a
    hiccup decides the p99, so no figure the target is judged by is taken under it."""
    max_run = measure_clicktrail(
        work / "open-loop-profile-max", redis_url=redis_url, workers=1, links=links, opts=opts, profile=True
    )
    point = measure_open_loop(
        work / "open-loop-profile-target",
        redis_url=redis_url,
        links=links,
        rate=round(maximum * TARGET_SHARE),
        duration_s=mode.open_loop_s,
        connections=OPEN_LOOP_CONNECTIONS,
        opts=opts,
        profile=True,
    )
    return {"max_run": max_run, "point": point | {"share_of_max": TARGET_SHARE}}


def _backlog(mode: Mode, opts: BenchOptions, work: Path, log) -> dict:
    links = min(mode.links)
    with private_redis(work / "backlog-redis") as redis_url:
        seed_links(redis_url, links)
        log(f"  empty stream vs {mode.backlog_clicks:,} unconsumed clicks ...")
        pair = measure_backlog(
            work / "backlog", redis_url=redis_url, links=links, backlog_clicks=mode.backlog_clicks, opts=opts
        )
    return pair | {"links": links, "backlog_clicks": mode.backlog_clicks}


def _memory(mode: Mode, opts: BenchOptions, work: Path, result: dict, log) -> dict:
    links = mode.memory_links
    expected = _max_rps(result, max(mode.links)) if "redirect" in result else 5_000.0
    with private_redis(work / "memory-redis") as redis_url:
        log(f"  seeding {links:,} links; every code requested once ...")
        seed_links(redis_url, links)
        return measure_memory(
            work / "memory", redis_url=redis_url, links=links, expected_rps=expected, opts=opts
        )


def _ingest(mode: Mode, log) -> dict:
    log(f"  {mode.ingest_clicks:,} clicks, then {mode.lag_s:g} s of lag at 5,000 clicks/s ...")
    figures = ingest.run(mode.ingest_clicks, mode.lag_s)
    # Two ingesters (the consumer group scales out; this machine has two cores): throughput only.
    log(f"  {mode.ingest_clicks:,} clicks, two ingesters ...")
    figures["two_ingesters"] = ingest.run(mode.ingest_clicks, 0, ingesters=2)["throughput"]
    # Where the ingester's CPU goes, stage by stage, and the insert alone: the profile behind the target.
    log(f"  {mode.stage_clicks:,} clicks, the ingester stage by stage ...")
    figures["stages"] = ingest_stages.run(
        mode.stage_clicks, figures["throughput"]["batch_size"], mode.stage_rounds
    )
    return figures | {"clicks": mode.ingest_clicks, "lag_seconds": mode.lag_s}


# Each size is attributed by one process, then on the same load with lanes (attribution/lanes.py).
ATTRIBUTION_WORKERS = (1, 2)


def _attribution(mode: Mode, log) -> dict:
    runs = []
    for clicks, orders in mode.attribution:
        database = f"ct_report_attr_{secrets.token_hex(3)}"  # kept between its runs, dropped after
        try:
            for workers in ATTRIBUTION_WORKERS:
                log(f"  {orders:,} orders against {clicks:,} clicks, {workers} worker(s) ...")
                runs.append(
                    attribution.run(
                        clicks, orders, log=lambda msg: log("  " + msg), database=database, workers=workers
                    )
                )
        finally:
            attribution.drop_database(database)
    return {"runs": runs}


def write_outputs(result: dict, out: Path, charts_dir: Path) -> list[Path]:
    from benchmarks import charts

    charts_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for section, draw in (
        ("redirect", charts.redirect_charts),
        ("open_loop", charts.open_loop_chart),
        ("redirect", charts.growth_chart),
        ("memory", charts.memory_chart),
    ):
        if section in result:
            paths = draw(result, charts_dir)
            made.extend(paths if isinstance(paths, list) else [paths])
    out.write_text(render(result, out, made))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small counts, short runs (under ~3 minutes)")
    size.add_argument("--smoke", action="store_true", help="tiny counts (under a minute), for the smoke test")
    parser.add_argument("--out", type=Path, default=HERE / "REPORT.md", help="the markdown report")
    parser.add_argument(
        "--charts", type=Path, default=None, help="PNG directory (default: report/ beside --out)"
    )
    parser.add_argument("--json-dir", type=Path, default=OUT_DIR, help="directory of the raw JSON")
    parser.add_argument("--from-json", type=Path, default=None, help="re-render a saved run, measure nothing")
    args = parser.parse_args(argv)
    charts_dir = args.charts or args.out.parent / "report"
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
        command = " ".join(["python -m benchmarks.report", *(argv if argv is not None else sys.argv[1:])])
        args.json_dir.mkdir(parents=True, exist_ok=True)
        json_path = args.json_dir / f"report-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"

        def save(partial: dict) -> None:
            json_path.write_text(json.dumps(partial, indent=2, default=str) + "\n")

        result = run_report(mode, command, save, log=lambda msg: print(msg, flush=True))
        save(result)
        print(f"raw figures: {json_path}")
    made = write_outputs(result, args.out, charts_dir)
    print(f"written: {args.out} and {len(made)} charts in {charts_dir}")
    failed = [name for name, chk in click_checks(result) if not chk]
    for name in failed:
        print(f"FAILED click check: {name}")
    for name, error in result["errors"].items():
        print(f"FAILED section {name}: {error}")
    return 1 if failed or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
