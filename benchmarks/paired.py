"""Redirect ratios from paired runs: two servers up at once, wrk alternating between them in short slices, so
that both figures of a ratio come from the same minutes of the machine.

    .venv/bin/python -m benchmarks.paired [--pairs c/b,many/few] [--few 1000] [--many 1000000]
                                          [--slices 10] [--slice-s 2] [--repeat 3] [--mix uniform]

Why: on this VM the same code's throughput moves by a third between minutes (the bare app measured 26,000
to 43,000/s within ten quiet minutes), and benchmarks.redirect measures each system for 10 s one after the
other, so a ratio of two of its figures carries that swing. Here the two servers of a pair run side by side
(the one not under load is idle) and wrk drives them in slices of `slice_s` seconds in the order
A B B A A B ..., so a drift during the run falls on both sides alike. The pairs are issue 16's two redirect
ratios, each on one worker, with the code mix `mix`:

  c/b        `clicktrail serve` with `few` links / the bare ASGI 302 app (bare_asgi.py) with `few` links
  many/few   `clicktrail serve` with `many` links / `clicktrail serve` with `few` links

Every clicktrail side has its own private Redis (seeded once, its click stream cleared before each run). A
side's requests/s is its requests summed over its slices divided by their summed durations, and a ratio
is of those; each slice's own ratio to the slice next to it (same seed of wrk's code choice) is listed too.
Every clicktrail side gets the exact click check over all its slices (clickcheck.merge_runs). `--repeat`
runs each pair that many times on fresh servers. Results also go to benchmarks/out/paired-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks import perfprofile
from benchmarks.clickcheck import check_clicks, count_recorded, merge_runs
from benchmarks.redis_server import private_redis
from benchmarks.scenarios import group_rss_kb
from benchmarks.systems import (
    REDIS_PREFIX,
    BenchOptions,
    _clear_clicks,
    _redis_pid,
    _wrk,
    bare_server,
    clicktrail_server,
    seed_links,
)

OUT_DIR = Path(__file__).resolve().parent / "out"
# Issue 16's targets for the two ratios (the c/b one in each of three runs).
TARGETS = {"c/b": 0.70, "many/few": 0.85}
PAIRS = tuple(TARGETS)
SERVER_MODULE = "clicktrail.cli"


@dataclass(frozen=True)
class Pair:
    name: str
    a: tuple[str, int]  # (system, links): the numerator
    b: tuple[str, int]  # the denominator


def pairs_for(names: tuple[str, ...], few: int, many: int) -> list[Pair]:
    known = {
        "c/b": Pair("c/b", ("clicktrail", few), ("bare", few)),
        "many/few": Pair("many/few", ("clicktrail", many), ("clicktrail", few)),
    }
    return [known[name] for name in names if name != "many/few" or many != few]


@dataclass
class Side:
    """One server of a pair and the wrk figures of its slices."""

    system: str
    links: int
    port: int
    cpu: dict[str, int]
    ids_dir: Path | None = None  # clicktrail: the click ids of each slice's 302s
    slices: list[dict] = field(default_factory=list)
    check: dict | None = None
    exit_code: int | None = None
    rss_kb: int | None = None  # the server's resident memory after its last slice (one worker)


@contextlib.contextmanager
def _side(
    work: Path, system: str, links: int, redis_url: str | None, opts: BenchOptions, module: str
) -> Iterator[Side]:
    """The server of one side, started and warm; on exit it is stopped (SIGTERM: the recorder flushes) and a
    clicktrail side's clicks are checked against every slice's 302s."""
    if system == "bare":
        with bare_server(work, workers=1, links=links, opts=opts) as srv:
            side = Side(system, links, srv.port, {"server": srv.proc.pid})
            yield side
        side.exit_code = srv.exit_code
        return
    assert redis_url is not None
    _clear_clicks(redis_url)
    with clicktrail_server(
        work, redis_url=redis_url, workers=1, click_param=opts.click_param, module=module
    ) as srv:
        cpu = {"server": srv.proc.pid, "redis": _redis_pid(redis_url)}
        side = Side(system, links, srv.port, cpu, ids_dir=work / "ids")
        side.ids_dir.mkdir(parents=True, exist_ok=True)
        yield side
    side.exit_code = srv.exit_code
    every_id = work / "ids-all.txt"
    every_id.write_text("".join(path.read_text() for path in sorted(side.ids_dir.glob("*.txt"))))
    side.check = check_clicks(
        merge_runs(side.slices),
        every_id,
        count_recorded(redis_url, srv.data_dir, REDIS_PREFIX),
        srv.probe_ids,
        opts.connections,
        srv.env["CLICKTRAIL_SECRET_KEY"],
    )
    if not srv.all_ready:
        side.check["passed"] = False
        side.check["not_all_ready"] = True


def run_pair(
    work: Path,
    pair: Pair,
    opts: BenchOptions,
    *,
    slices: int,
    slice_s: int,
    repeat: int,
    module: str = SERVER_MODULE,
    profile: bool = False,
    log=print,
) -> list[dict]:
    """`repeat` paired runs of `pair`, each on fresh servers over Redis instances seeded once; with
    `profile`, each server sampled by perf while wrk drives the pair (perfprofile.py)."""
    with contextlib.ExitStack() as stack:
        urls: dict[int, str] = {}
        for system, links in (pair.a, pair.b):
            if system == "clicktrail" and links not in urls:
                urls[links] = stack.enter_context(private_redis(work / f"redis-{links}"))
                log(f"  seeding {links:,} links ...")
                seed_links(urls[links], links)
        runs = []
        for n in range(repeat):
            here = work / f"{pair.name.replace('/', '-')}-{n}"
            with (
                _side(here / "a", *pair.a, urls.get(pair.a[1]), opts, module) as a,
                _side(here / "b", *pair.b, urls.get(pair.b[1]), opts, module) as b,
                perfprofile.sampling_if(
                    profile, {"a": a.cpu["server"], "b": b.cpu["server"]}, here / "perf"
                ) as sampled,
            ):
                _alternate(a, b, opts, slices, slice_s)
            runs.append(figures(pair, a, b, opts, slice_s))
            if sampled is not None:
                runs[-1] |= sampled.result({side: runs[-1][side]["requests"] for side in ("a", "b")})
            log(f"  {pair.name} run {n + 1}: {summary_line(runs[-1])}")
            if "profile" in runs[-1]:
                log(f"    profile: A {perfprofile.summary(profile_of([runs[-1]]))}")
            elif "profile_error" in runs[-1]:
                log(f"    no profile: {runs[-1]['profile_error']}")
    return runs


def _alternate(a: Side, b: Side, opts: BenchOptions, slices: int, slice_s: int) -> None:
    """`slices` slices per side in the order A B B A A B ...; both slices of a pair use the same seed."""
    for n in range(slices):
        sliced = replace(opts, duration_s=slice_s, seed=opts.seed + n)
        for side in (a, b) if n % 2 == 0 else (b, a):
            ids_file = side.ids_dir / f"{n:04d}.txt" if side.ids_dir else None
            side.slices.append(_wrk(side.port, side.links, sliced, ids_file=ids_file, cpu=side.cpu))
    for side in (a, b):
        side.rss_kb = group_rss_kb(side.cpu["server"])["leader"]


def _totals(side: Side) -> dict:
    requests = sum(s["requests"] for s in side.slices)
    seconds = sum(s["duration_s"] for s in side.slices)
    server_cpu_s = sum(s["cores_used"].get("server", 0) * s["duration_s"] for s in side.slices)
    p99s = [s["latency_ms"]["p99"] for s in side.slices]
    out = {
        "system": side.system,
        "links": side.links,
        "requests": requests,
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
        "requests_per_server_cpu_s": round(requests / server_cpu_s) if server_cpu_s else None,
        "p99_ms": {"median": round(statistics.median(p99s), 3), "max": max(p99s)} if p99s else None,
        "slices_requests_per_s": [s["requests_per_s"] for s in side.slices],
        "slices_load_average": [s["load_average_before"][0] for s in side.slices],
        "rss_kb": side.rss_kb,
        "non_2xx_3xx": sum(s["non_2xx_3xx"] for s in side.slices),
        "exit_code": side.exit_code,
        "command": side.slices[0]["command"] if side.slices else "",
    }
    if side.check is not None:
        out["check"] = side.check
    return out


def figures(pair: Pair, a: Side, b: Side, opts: BenchOptions, slice_s: int) -> dict:
    fa, fb = _totals(a), _totals(b)
    # From the requests and seconds, not the rounded rates, and compared with the target unrounded.
    measured = fa["seconds"] and fb["seconds"] and fb["requests"]
    exact = (fa["requests"] / fa["seconds"]) / (fb["requests"] / fb["seconds"]) if measured else None
    per_cpu = (
        round(fa["requests_per_server_cpu_s"] / fb["requests_per_server_cpu_s"], 3)
        if fa["requests_per_server_cpu_s"] and fb["requests_per_server_cpu_s"]
        else None
    )
    slice_ratios = [
        round(x / y, 3) if y else None
        for x, y in zip(fa["slices_requests_per_s"], fb["slices_requests_per_s"], strict=True)
    ]
    checks = [side["check"]["passed"] for side in (fa, fb) if "check" in side]
    return {
        "pair": pair.name,
        "mix": opts.mix,
        "connections": opts.connections,
        "slice_s": slice_s,
        "a": fa,
        "b": fb,
        "ratio": None if exact is None else round(exact, 3),
        "ratio_per_server_cpu_s": per_cpu,
        "slice_ratios": slice_ratios,
        "target": TARGETS.get(pair.name),
        # A ratio counts only with its clicks checked: a side that lost clicks or never warmed up is no
        # figure of clicktrail at all.
        "met": exact is not None and exact >= TARGETS.get(pair.name, 0) and all(checks) and bool(checks),
        "clicks_checked": all(checks) and bool(checks),
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def profile_of(runs: list[dict]) -> dict:
    """A's CPU a request against B's (perfprofile.compare) over the runs that were profiled."""
    profiled = [run["profile"] for run in runs if "profile" in run]
    return perfprofile.compare(
        perfprofile.combined([p["a"] for p in profiled]), perfprofile.combined([p["b"] for p in profiled])
    )


def summary_line(run: dict) -> str:
    a, b = run["a"], run["b"]
    slices = run["slice_ratios"]
    return (
        f"{a['system']} {a['links']:,} links {a['requests_per_s']:,.0f}/s / "
        f"{b['system']} {b['links']:,} links {b['requests_per_s']:,.0f}/s = {run['ratio']} "
        f"(per server CPU-s {run['ratio_per_server_cpu_s']}; "
        f"slices {min(slices, default=0)}-{max(slices, default=0)}), target {run['target']}: "
        f"{'met' if run['met'] else 'NOT met'}; clicks {'OK' if run['clicks_checked'] else 'FAILED'}"
    )


def run_all(
    pair_names: tuple[str, ...],
    few: int,
    many: int,
    opts: BenchOptions,
    *,
    slices: int,
    slice_s: int,
    repeat: int,
    work_root: Path | None = None,
    module: str = SERVER_MODULE,
    profile: bool = False,
    log=print,
) -> dict:
    result: dict = {"few": few, "many": many, "slices": slices, "slice_s": slice_s, "repeat": repeat,
                    "mix": opts.mix, "connections": opts.connections, "module": module, "profile": profile,
                    "pairs": {}, "errors": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="clicktrail-paired-", dir=work_root) as tmp:
        for pair in pairs_for(pair_names, few, many):
            log(f"[paired {pair.name}] {pair.a[0]} {pair.a[1]:,} links / {pair.b[0]} {pair.b[1]:,} links, "
                f"{slices} slices of {slice_s:g} s each, {repeat} run(s) ...")  # fmt: skip
            try:
                result["pairs"][pair.name] = run_pair(
                    Path(tmp), pair, opts, slices=slices, slice_s=slice_s, repeat=repeat, module=module,
                    profile=profile, log=log,
                )  # fmt: skip
            except (
                Exception
            ) as exc:  # recorded in the result (and the exit status); the other pair still runs
                result["errors"][pair.name] = f"{type(exc).__name__}: {exc}"
                log(f"  FAILED: {result['errors'][pair.name]}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default=",".join(PAIRS), help="c/b and/or many/few, comma-separated")
    parser.add_argument("--few", type=int, default=1000, help="links of the few-links side (default 1000)")
    parser.add_argument("--many", type=int, default=1_000_000, help="links of the many-links side")
    parser.add_argument("--slices", type=int, default=10, help="wrk slices per side (default 10)")
    parser.add_argument(
        "--slice-s", type=int, default=2, help="whole seconds per slice, as wrk runs (default 2)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per pair, fresh servers each (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--mix", default="uniform", help="uniform or zipf:S (default uniform)")
    parser.add_argument(
        "--server-module",
        default=SERVER_MODULE,
        help="module run as `python -m MODULE serve` for clicktrail sides (default clicktrail.cli; "
        "benchmarks.dictcache: the experiment of one dict of decoded links)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample both servers of each run with perf: where A's CPU a request goes beyond B's "
        "(benchmarks/perfprofile.py)",
    )
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.pairs.split(",") if n.strip())
    if not names or set(names) - set(PAIRS):
        parser.error(f"--pairs must name some of {', '.join(PAIRS)}")
    if args.slices < 2 or args.slices % 2 or args.slice_s < 1 or args.repeat < 1:
        parser.error("--slices must be even and at least 2 (A leads as often as B), --slice-s at least 1, "
                     "--repeat at least 1")  # fmt: skip
    opts = BenchOptions(connections=args.connections, mix=args.mix)
    result = run_all(
        names, args.few, args.many, opts, slices=args.slices, slice_s=args.slice_s, repeat=args.repeat,
        module=args.server_module, profile=args.profile, log=lambda msg: print(msg, flush=True),
    )  # fmt: skip
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"paired-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written: {path}")
    runs = [run for pair_runs in result["pairs"].values() for run in pair_runs]
    return 0 if runs and not result["errors"] and all(run["clicks_checked"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
