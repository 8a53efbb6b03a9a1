"""Run wrk with `redirect.lua` against one server and return its figures as a dict.

wrk is a closed-loop client: each connection sends its next request when the previous answer arrives, so
throughput and latency are measured at a fixed concurrency (`connections`). The Lua `response()` hook
counts every status exactly (wrk's own "Non-2xx or 3xx" line cannot tell a 302 from a 301) and, when
asked, collects the click id of every 302 so that it can be matched against the recorded clicks.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

from benchmarks import procs

SCRIPT = Path(__file__).with_name("redirect.lua")
# A request not answered within this is counted by wrk as a timeout (and left out of the latencies).
REQUEST_TIMEOUT_S = 2
# wrk itself must finish within its duration plus this; otherwise it is killed and the run fails.
WRK_GRACE_S = 30


def wrk_binary() -> str:
    return procs.binary("wrk", "wrk")


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run_wrk(
    url: str,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    links: int,
    seed: int = 1,
    click_param: str = "ct_click",
    ids_file: Path | None = None,
    sequential: bool = False,
    user_agent: str = "",
    mix: str = "uniform",
) -> dict:
    """GET random codes (`mix`: "uniform" or "zipf:S", see redirect.lua; or, `sequential`, every code in
    turn) from `url` (base URL, no path) for `duration_s`; returns requests/s, latency percentiles in ms,
    status counts and socket errors."""
    threads = max(1, min(threads, connections))
    env = dict(os.environ, BENCH_LINKS=str(links), BENCH_SEED=str(seed), BENCH_CLICK_PARAM=click_param,
               BENCH_MIX=mix)  # fmt: skip
    env.pop("BENCH_IDS_FILE", None)
    env.pop("BENCH_SEQUENTIAL", None)
    env.pop("BENCH_USER_AGENT", None)
    if user_agent:
        env["BENCH_USER_AGENT"] = user_agent
    if sequential:
        env["BENCH_SEQUENTIAL"] = str(threads)
    if ids_file is not None:
        env["BENCH_IDS_FILE"] = str(ids_file)
    cmd = [
        wrk_binary(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        f"--script={SCRIPT}",
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + WRK_GRACE_S)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    figures = parse_output(proc.stdout)
    figures["command"] = " ".join(cmd)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures["wrk_cores"] = round(used / wall, 2)
    return figures


def parse_output(stdout: str) -> dict:
    """The WRK_JSON line printed by redirect.lua's done(), turned into figures with units in the names."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line.removeprefix("WRK_JSON "))
            break
    else:
        raise RuntimeError(f"no WRK_JSON line in wrk output:\n{stdout}")
    duration_s = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    return {
        "requests": raw["requests"],
        "duration_s": round(duration_s, 3),
        "requests_per_s": round(raw["requests"] / duration_s, 1) if duration_s else 0.0,
        "latency_ms": {
            name: round(lat[name] / 1000, 3) for name in ("mean", "p50", "p90", "p99", "p99.9", "max")
        },
        "statuses": dict(sorted(statuses.items())),
        "non_2xx_3xx": sum(v for k, v in statuses.items() if not 200 <= k < 400),
        "socket_errors": raw["errors"],
        "ids_written": raw["ids_written"],
    }
