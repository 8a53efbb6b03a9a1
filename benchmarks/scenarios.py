"""The report's measurements beyond the redirect benchmark, each on a private Redis the caller seeded with
links (systems.seed_links), each with the exact click check (clickcheck.py):

  measure_open_loop  clicktrail under a fixed offered rate from the open-loop client (openloop.py);
  measure_backlog    the same wrk run against an empty click stream and against a stream already holding
                     N unconsumed clicks (backlog.py);
  measure_memory     RSS of one redirect worker before and after its link cache holds every link (wrk
                     requests every code in turn), and Redis bytes per buffered click over that run.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import redis

from benchmarks import perfprofile, procs
from benchmarks.clickcheck import check_clicks, count_recorded, merge_runs
from benchmarks.openloop import run_openloop
from benchmarks.systems import (
    REDIS_PREFIX,
    BenchOptions,
    _clear_clicks,
    _redis_pid,
    _wrk,
    clicktrail_server,
    measure_clicktrail,
)
from core.keys import Keys

# The warm-up of the memory figure aims at this share of the measured throughput, so that one pass over
# every code fits in its duration; the pass wraps around, so over-running only adds cache hits.
WARM_RATE_SHARE = 0.7
# RSS is read this long after the load stops (the allocator settles).
RSS_SETTLE_S = 1.0
MEMORY_BUDGET_BYTES_PER_LINK = 1024


def measure_open_loop(
    work: Path,
    *,
    redis_url: str,
    links: int,
    rate: float,
    duration_s: float,
    connections: int,
    opts: BenchOptions,
    extra_env: dict[str, str] | None = None,
    profile: bool = False,
) -> dict:
    """One worker, `rate` requests/s offered for `duration_s`, every request answered or counted. With
    `profile`, perf samples the worker through the run (perfprofile.py: `profile`, or `profile_error`)."""
    _clear_clicks(redis_url)
    ids_file = work / "ids.txt"
    # The meter inside the sampled block: perf's attach wait is no part of the run's CPU figures.
    with (
        clicktrail_server(
            work, redis_url=redis_url, workers=1, click_param=opts.click_param, extra_env=extra_env
        ) as srv,
        perfprofile.sampling_if(profile, {"server": srv.proc.pid}, work / "perf") as sampled,
    ):
        meter = procs.CpuMeter({"server": srv.proc.pid, "redis": _redis_pid(redis_url)})
        meter.start()
        figures = run_openloop(
            srv.port,
            rate=rate,
            duration_s=duration_s,
            links=links,
            connections=connections,
            seed=opts.seed,
            click_param=opts.click_param,
            ids_file=ids_file,
        )
        figures["cores_used"] = meter.stop()
        figures["server_cpu_s"] = round(meter.cpu_s["server"], 3)
        # Share of the run each main thread was runnable but waited for a core (others had both).
        figures["run_queue_wait"] = meter.run_queue_wait
    if sampled is not None:  # read once the server has stopped: `perf report` takes seconds of CPU
        figures |= sampled.result({"server": figures["answered"]})
    figures["statuses"] = {int(k): v for k, v in figures["statuses"].items()}
    # The shape check_clicks expects from wrk: the client waits for every answer, so nothing is abandoned
    # unless it was unanswered (counted as a timeout) or its connection was lost.
    figures["socket_errors"] = {
        "timeout": figures["unanswered"],
        "read": figures["connections_lost_with_request"],
    }
    figures["ended_at_ms"] = time.time_ns() // 1_000_000
    figures["exit_code"] = srv.exit_code
    recorded = count_recorded(redis_url, srv.data_dir, REDIS_PREFIX)
    figures["check"] = check_clicks(
        figures, ids_file, recorded, srv.probe_ids, connections, srv.env["CLICKTRAIL_SECRET_KEY"]
    )
    return figures


def measure_backlog(
    work: Path, *, redis_url: str, links: int, backlog_clicks: int, opts: BenchOptions
) -> dict:
    """wrk against one worker with an empty stream, then with `backlog_clicks` unconsumed clicks in it."""
    return {
        "empty": measure_clicktrail(work / "empty", redis_url=redis_url, workers=1, links=links, opts=opts),
        "backlog": measure_clicktrail(
            work / "backlog",
            redis_url=redis_url,
            workers=1,
            links=links,
            opts=opts,
            backlog_clicks=backlog_clicks,
        ),
    }


def measure_memory(
    work: Path,
    *,
    redis_url: str,
    links: int,
    expected_rps: float,
    opts: BenchOptions,
    mixes: tuple[str, ...] = ("uniform", "zipf:1.1"),
) -> dict:
    """One worker with a link cache as large as the links; wrk requests every code in turn (one pass at
    WARM_RATE_SHARE of `expected_rps`); RSS before and after, cache entries from /metrics, and Redis
    used_memory before and after the clicks of the pass. Then wrk as in the redirect benchmark, once per
    code mix, against that worker with its cache full (`warm_cache_runs`); every click of all the runs is
    checked after the server stopped (so its buffer is flushed)."""
    _clear_clicks(redis_url)
    client = redis.Redis.from_url(redis_url)
    duration_s = math.ceil(links / max(1.0, expected_rps * WARM_RATE_SHARE)) + 2
    warm_opts = BenchOptions(duration_s=duration_s, connections=opts.connections, threads=opts.threads,
                             seed=opts.seed, click_param=opts.click_param)  # fmt: skip
    # A budget that holds every link whatever its packed size, so the figure is per link cached.
    # No preload: the worker starts with an empty cache (the RSS baseline) and the requests fill it.
    extra_env = {
        "CLICKTRAIL_LINK_CACHE_BYTES": str(links * MEMORY_BUDGET_BYTES_PER_LINK),
        "CLICKTRAIL_LINK_CACHE_PRELOAD_MAX_S": "0",
    }
    ids_file = work / "wrk-ids.txt"
    try:
        with clicktrail_server(work, redis_url=redis_url, workers=1, click_param=opts.click_param,
                               extra_env=extra_env) as srv:  # fmt: skip
            time.sleep(RSS_SETTLE_S)
            rss_before = group_rss_kb(srv.proc.pid)
            used_before = client.info("memory")["used_memory"]
            figures = _wrk(
                srv.port, links, warm_opts, ids_file=ids_file, cpu={"server": srv.proc.pid}, sequential=True
            )
            time.sleep(RSS_SETTLE_S)
            rss_after = group_rss_kb(srv.proc.pid)
            metrics = procs.http_get(srv.port, "/metrics", timeout_s=10)[2].decode()
            # Redis figures of the pass alone (its clicks are committed well within the settle time).
            used_after = client.info("memory")["used_memory"]
            stream_bytes = client.memory_usage(Keys(REDIS_PREFIX).clicks, samples=0) or 0
            clicks = len(count_recorded(redis_url, srv.data_dir, REDIS_PREFIX)["stream_clicks"])
            # The same worker, its cache now holding every link: what a worker that has run a while serves.
            warm = {}
            for mix in mixes:
                warm[mix] = _wrk(srv.port, links, replace(opts, mix=mix), ids_file=work / f"warm-{mix}.txt",
                                 cpu={"server": srv.proc.pid, "redis": _redis_pid(redis_url)})  # fmt: skip
    finally:
        client.close()
    recorded = count_recorded(redis_url, srv.data_dir, REDIS_PREFIX)
    figures["exit_code"] = srv.exit_code
    runs = [figures, *warm.values()]
    all_ids = work / "all-ids.txt"
    ids_files = [ids_file, *(work / f"warm-{mix}.txt" for mix in warm)]
    all_ids.write_text("".join(path.read_text() for path in ids_files))
    figures["check"] = check_clicks(
        merge_runs(runs), all_ids, recorded, srv.probe_ids, warm_opts.connections,
        srv.env["CLICKTRAIL_SECRET_KEY"],
    )  # fmt: skip
    cached = _gauge(metrics, "clicktrail_link_cache_entries") or links
    return {
        "links": links,
        "link_cache_bytes": int(extra_env["CLICKTRAIL_LINK_CACHE_BYTES"]),
        "cache_entries": _gauge(metrics, "clicktrail_link_cache_entries"),
        "cache_bytes_counted": _gauge(metrics, "clicktrail_link_cache_bytes"),
        "rss_kb_empty_cache": rss_before,
        "rss_kb_full_cache": rss_after,
        # Per link the cache holds (a warm-up pass slowed by a loaded machine may not reach every code).
        "rss_bytes_per_cached_link": round((rss_after["max"] - rss_before["max"]) * 1024 / cached, 1),
        "clicks_buffered": clicks,
        "redis_used_memory_delta": used_after - used_before,
        "redis_bytes_per_buffered_click": round((used_after - used_before) / clicks, 1) if clicks else None,
        "redis_stream_memory_usage_per_click": round(stream_bytes / clicks, 1) if clicks else None,
        "warm_wrk": figures,
        "warm_cache_runs": warm,
    }


def group_rss_kb(pgid: int) -> dict:
    """VmRSS (kB) of each live process of a group (/proc/<pid>/status): the leader's and the largest."""
    rss = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[int(stat.parent.name)] = int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return {"leader": rss.get(pgid), "max": max(rss.values(), default=0), "processes": len(rss)}


def _gauge(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
