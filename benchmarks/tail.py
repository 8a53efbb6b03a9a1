"""The open-loop tail alone (report section 2 without the rest): one worker, 1,000 links on a private Redis,
the maximum measured with wrk (or given), then the open-loop client at each share of it, `--repeat` times,
with the server's event-loop stall and GC pause histograms per run. For before/after comparisons of a fix:

    .venv/bin/python -m benchmarks.tail --shares 0.75 --repeat 3 [--rate 20000] [--env CLICKTRAIL_X=1]
        [--connections 512] [--profile]

With `--profile`, perf samples the worker in wrk's run at the maximum and in each open-loop run, and each
open-loop run's CPU a request is compared with the maximum's (perfprofile.py; so not with `--rate`). Unlike
the report's section 2, the runs it prints are the sampled ones.

Prints one table row per run (and the load average when it started), and at the end the JSON of wrk's run at
the maximum (`max_run`, empty with `--rate`) and of every open-loop run (`runs`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import perfprofile
from benchmarks.openloop import server_cpu_us, stall_row
from benchmarks.redis_server import private_redis
from benchmarks.scenarios import measure_open_loop
from benchmarks.systems import BenchOptions, measure_clicktrail, seed_links

LINKS = 1000
CONNECTIONS = 128  # as the report's section 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tail", description=__doc__.split("\n")[0])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.75])
    parser.add_argument("--rate", type=float, default=None, help="the maximum, req/s (default: wrk measures)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per open-loop run")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument(
        "--connections", type=int, default=CONNECTIONS, help=f"client connections (default {CONNECTIONS})"
    )
    parser.add_argument(
        "--profile", action="store_true", help="perf: each run's CPU a request against the maximum's"
    )
    args = parser.parse_args(argv)
    if args.profile and args.rate is not None:
        parser.error("--profile compares each run with wrk's run at the maximum: leave out --rate")
    extra_env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="clicktrail-tail-") as tmp:
        work = Path(tmp)
        with private_redis(work / "redis") as url:
            closed, runs = _runs(args, work, url, extra_env)
    print(json.dumps({"max_run": closed, "runs": runs}))
    return 0


def _runs(args, work: Path, url: str, extra_env: dict) -> tuple[dict, list[dict]]:
    opts = BenchOptions(duration_s=3)
    runs = []
    seed_links(url, LINKS)
    maximum = args.rate
    closed: dict = {}
    if maximum is None:
        closed = measure_clicktrail(
            work / "max",
            redis_url=url,
            workers=1,
            links=LINKS,
            opts=opts,
            extra_env=extra_env,
            profile=args.profile,
        )
        maximum = closed["requests_per_s"]
        print(f"wrk: server {server_cpu_us(closed)} µs CPU per request at the maximum", file=sys.stderr)
    print(f"maximum {maximum:,.0f} req/s; env {extra_env or '-'}", file=sys.stderr)
    for n in range(args.repeat):
        for share in args.shares:
            load = os.getloadavg()
            point = measure_open_loop(
                work / f"run-{n}-{share}",
                redis_url=url,
                links=LINKS,
                rate=round(maximum * share),
                duration_s=args.duration,
                connections=args.connections,
                opts=opts,
                extra_env=extra_env,
                profile=args.profile,
            )
            point |= {"share_of_max": share, "load_average": [round(x, 2) for x in load]}
            runs.append(point)
            lat = point["latency_ms"]
            print(
                f"{share:.0%} {point['offered_rate_per_s']:,.0f}/s load {load[0]:.2f}: "
                f"p50 {lat.get('p50')} p99 {lat.get('p99')} max {lat.get('max')} ms, "
                f"server {server_cpu_us(point)} µs CPU per request, "
                f"service p99 {point['service_ms'].get('p99')} ms, queue {point['max_client_queue']}, "
                f"cores server {point['cores_used'].get('server')} redis {point['cores_used'].get('redis')} "
                f"machine {point['cores_used'].get('machine_busy')}, "
                f"run-queue wait {point['run_queue_wait']}, "
                f"clicks {point['check']['passed']}; " + stall_row(point.get("stalls")),
                f"; client {point['client_stalls']}",
                file=sys.stderr,
            )
            if args.profile:
                compared = perfprofile.compare_runs(point, closed)
                why = "; ".join(perfprofile.errors(closed, point))
                shown = perfprofile.summary(compared) if compared else f"none ({why})"
                print(f"  profile against the maximum: {shown}", file=sys.stderr)
    return closed, runs


if __name__ == "__main__":
    sys.exit(main())
