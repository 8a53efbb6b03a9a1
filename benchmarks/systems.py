"""The three systems of the redirect benchmark, each measured by one function that starts it, drives it
with wrk and stops it, returning its figures as a dict:

  measure_nginx       (a) a private nginx answering a static 302: the HTTP limit of this machine;
  measure_bare        (b) a bare ASGI app answering a 302 from a dict, under clicktrail's uvicorn settings:
                          the Python ceiling;
  measure_clicktrail  (c) `clicktrail serve` recording every click durably into a redis-server, with the
                          exact click check afterwards (clickcheck.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import redis

from benchmarks import nginx, perfprofile, procs
from benchmarks.backlog import fill_backlog, trim_backlog
from benchmarks.clickcheck import check_clicks, count_recorded
from benchmarks.codes import code_for, destination_for
from benchmarks.redis_server import compact_aof
from benchmarks.wrk import run_wrk

ROOT = Path(__file__).resolve().parent.parent
REDIS_PREFIX = "ct:"
CREATOR_ID = "bench"
# Links written to Redis per pipeline round trip while seeding.
SEED_CHUNK = 10_000
# How long to wait for every clicktrail worker to subscribe to link changes before starting anyway.
WORKER_READY_TIMEOUT_S = 30
# Above the preload's own default limit (CLICKTRAIL_LINK_CACHE_PRELOAD_MAX_S, 60 s).
WARM_TIMEOUT_S = 90
# Workers publish their counters to their peers every second: wait this long before scraping /metrics.
METRICS_SETTLE_S = 1.5


@dataclass(frozen=True)
class BenchOptions:
    duration_s: float = 10.0
    connections: int = 64
    threads: int = 2
    seed: int = 1
    click_param: str = "ct_click"
    # HTTP protocol of the bare app: plain "httptools", or "clicktrail" (clicktrail's protocol subclass).
    bare_http: str = "httptools"
    # What the seeded links are (LINK_SHAPES): plain links, or smart links with 5 rules and 2 variants.
    link_shape: str = "plain"
    # Which codes wrk asks for (redirect.lua): "uniform", or "zipf:S" (skewed as real traffic is).
    mix: str = "uniform"
    # The dashboard system (dashload.py): browsers loading pages meanwhile, and their pause between pages.
    dash_clients: int = 2
    dash_pause_ms: int = 0
    dash_rounds: int = 3


# --- (a) nginx --------------------------------------------------------------------------------------
def measure_nginx(work: Path, *, workers: int, links: int, opts: BenchOptions) -> dict:
    with nginx.private_nginx(work, workers=workers) as (port, proc):
        figures = _wrk(port, links, opts, cpu={"server": proc.pid})
    return figures


# --- (b) bare ASGI ----------------------------------------------------------------------------------
@contextlib.contextmanager
def bare_server(work: Path, *, workers: int, links: int, opts: BenchOptions) -> Iterator[Served]:
    """The bare ASGI app on a free loopback port, every worker started and one 302 probed; stopped on exit
    (its exit code recorded in the Served)."""
    port = procs.free_port()
    cmd = [sys.executable, "-m", "benchmarks.bare_asgi", "--host", procs.LOOPBACK, "--port", str(port),
           "--workers", str(workers), "--http", opts.bare_http]  # fmt: skip
    ready_dir = work / "ready"
    ready_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, BENCH_LINKS=str(links), BENCH_READY_DIR=str(ready_dir), PYTHONPATH=str(ROOT))
    served = Served(port, procs.start(cmd, log_path=work / "bare.log", env=env, cwd=ROOT), env, work)
    try:
        procs.wait_until(served.proc, lambda: len(list(ready_dir.iterdir())) >= workers, "every bare worker")
        procs.wait_http(served.proc, port, "/" + code_for(0), ok=(302,))
        served.all_ready = True
        yield served
    finally:
        served.exit_code = procs.stop(served.proc)


def measure_bare(work: Path, *, workers: int, links: int, opts: BenchOptions) -> dict:
    with bare_server(work, workers=workers, links=links, opts=opts) as srv:
        figures = _wrk(srv.port, links, opts, cpu={"server": srv.proc.pid})
    figures["exit_code"] = srv.exit_code
    return figures


# --- (c) clicktrail ---------------------------------------------------------------------------------
def smart_shape(host: str):
    """The `smart` link shape: 5 rules that a benchmark request never matches (wrk sends no user agent:
    os `other`, device `bot`; its loopback address has no country), so every request checks all five,
    including one country rule (the offline lookup), then picks one of 2 variants: the costliest path
    short of `max_clicks` (which adds a Redis round trip by design)."""
    from core.links import Rule, Smart, Target, Variant, planned

    def target(path: str) -> Target:
        return Target(url=f"https://{host}/{path}", host=host)

    rules = (
        Rule(target("ios"), os=("ios",)),
        Rule(target("android"), os=("android",)),
        Rule(target("tablet"), device=("tablet",)),
        Rule(target("winphone"), os=("windows",), device=("mobile",)),
        Rule(target("uk"), country=("GB", "IE")),
    )
    return planned(Smart(rules=rules, variants=(Variant(target("a"), 70), Variant(target("b"), 30))))


LINK_SHAPES = ("plain", "smart")


def seed_links(
    redis_url: str, links: int, prefix: str = REDIS_PREFIX, shape: str = "plain", open_in: str = "default"
) -> dict:
    """Write `links` links straight into Redis with LinkStore's encoding (the API is too slow for a
    million), then compact the AOF so no rewrite runs during a measurement."""
    from core.keys import Keys
    from core.links import Link, encode_link

    smart = smart_shape("shop.example.com") if shape == "smart" else None

    keys = Keys(prefix)
    started = time.perf_counter()
    created_at_ms = time.time_ns() // 1_000_000
    client = redis.Redis.from_url(redis_url)
    try:
        for start in range(0, links, SEED_CHUNK):
            batch = {}
            for i in range(start, min(links, start + SEED_CHUNK)):
                code = code_for(i)
                link = Link(code=code, url=destination_for(i), creator_id=CREATOR_ID, host="shop.example.com",
                            created_at_ms=created_at_ms, open_in=open_in)  # fmt: skip
                if smart is not None:
                    link = msgspec.structs.replace(link, smart=smart)
                batch[keys.link(code)] = encode_link(link)
            client.mset(batch)
        compact_aof(client)
        used_memory = client.info("memory")["used_memory"]
    finally:
        client.close()
    return {
        "links": links,
        "seconds": round(time.perf_counter() - started, 2),
        "redis_used_memory": used_memory,
    }


def clicktrail_env(redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRAIL_")}
    env.update(
        CLICKTRAIL_REDIS_URL=redis_url,
        CLICKTRAIL_REDIS_PREFIX=REDIS_PREFIX,
        CLICKTRAIL_DATA_DIR=str(data_dir),
        CLICKTRAIL_SECRET_KEY=secrets.token_urlsafe(32),
        CLICKTRAIL_ADMIN_TOKEN=secrets.token_urlsafe(16),
        PYTHONPATH=str(ROOT),
    )
    return env


@dataclass
class Served:
    """A running `clicktrail serve`, as clicktrail_server() yields it."""

    port: int
    proc: subprocess.Popen
    env: dict[str, str]
    data_dir: Path
    probe_ids: list[str] = field(default_factory=list)
    all_ready: bool = False
    exit_code: int | None = None


@contextlib.contextmanager
def clicktrail_server(
    work: Path,
    *,
    redis_url: str,
    workers: int,
    click_param: str,
    extra_env: dict[str, str] | None = None,
    module: str = "clicktrail.cli",
) -> Iterator[Served]:
    """Serve on a free loopback port, wait for every worker, probe one redirect; on exit stop it (SIGTERM:
    the recorder flushes) and record its exit code. The stream is left as it is (see _clear_clicks).
    `module`: the command line's module (benchmarks/dictcache.py: an experiment's patched server)."""
    data_dir = work / "data"
    port = procs.free_port()
    cmd = [sys.executable, "-m", module, "serve", "--host", procs.LOOPBACK, "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    env = clicktrail_env(redis_url, data_dir) | (extra_env or {})
    served = Served(port, procs.start(cmd, log_path=work / "serve.log", env=env, cwd=ROOT), env, data_dir)
    try:
        procs.wait_http(served.proc, port, "/readyz")
        served.all_ready = _wait_clicktrail_workers(served.proc, redis_url, workers) and _wait_warm(
            served.proc, port, workers
        )
        served.probe_ids.append(_probe(port, click_param))
        yield served
    finally:
        served.exit_code = procs.stop(served.proc)


def measure_clicktrail(
    work: Path,
    *,
    redis_url: str,
    workers: int,
    links: int,
    opts: BenchOptions,
    backlog_clicks: int = 0,
    user_agent: str = "",
    answer_status: int = 302,
    extra_env: dict[str, str] | None = None,
    during: Callable[[Served], contextlib.AbstractContextManager] | None = None,
    profile: bool = False,
) -> dict:
    """Serve, probe one redirect, run wrk (collecting click ids), scrape /metrics, stop (SIGTERM: the
    recorder flushes), then match the recorded clicks against the 302s wrk received. With `backlog_clicks`,
    the stream holds that many unconsumed clicks before the server starts (removed again before the check).
    `during(served)` is entered for the length of wrk's run (other load on the same server). With
    `profile` (one worker), perf samples the server through wrk's run (perfprofile.py: `profile`, or
    `profile_error`)."""
    if profile and workers != 1:
        raise ValueError("profile samples one worker's process: workers must be 1")
    _clear_clicks(redis_url)
    backlog = fill_backlog(redis_url, REDIS_PREFIX, backlog_clicks) if backlog_clicks else None
    ids_file = work / "wrk-ids.txt"
    metrics_text = ""
    with clicktrail_server(
        work, redis_url=redis_url, workers=workers, click_param=opts.click_param, extra_env=extra_env
    ) as srv:
        cpu = {"server": srv.proc.pid, "redis": _redis_pid(redis_url)}
        sampling = perfprofile.sampling_if(profile, {"server": srv.proc.pid}, work / "perf")
        with during(srv) if during else contextlib.nullcontext(), sampling as sampled:
            figures = _wrk(srv.port, links, opts, ids_file=ids_file, cpu=cpu, user_agent=user_agent)
        time.sleep(METRICS_SETTLE_S if workers > 1 else 0)
        with contextlib.suppress(OSError):
            metrics_text = procs.http_get(srv.port, "/metrics", timeout_s=5)[2].decode()
    if sampled is not None:  # read once the server has stopped: `perf report` takes seconds of CPU
        figures |= sampled.result({"server": figures["requests"]})
    figures["exit_code"] = srv.exit_code
    figures["all_workers_ready"] = srv.all_ready
    figures["server_metrics"] = summarize_metrics(metrics_text)
    if backlog is not None:
        figures["backlog"] = backlog | {
            "removed_before_check": trim_backlog(redis_url, REDIS_PREFIX, backlog)
        }
    recorded = count_recorded(redis_url, srv.data_dir, REDIS_PREFIX)
    figures["check"] = check_clicks(
        figures,
        ids_file,
        recorded,
        srv.probe_ids,
        opts.connections,
        srv.env["CLICKTRAIL_SECRET_KEY"],
        answer_status=answer_status,
    )
    return figures


# A real TikTok Android agent (tests/unit/fixtures/inapp_agents.toml): the in-app scenarios send it.
INAPP_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240105.004; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/121.0.6167.143 Mobile Safari/537.36 musical_ly_2023303040 "
    "JsSdk/1.0 NetType/WIFI "
    "Channel/googleplay AppName/musical_ly app_version/33.3.4 ByteLocale/en ByteFullLocale/en Region/US "
    "AppId/1233 Spark/1.5.0.5-alpha.2 AppVersion/33.3.4 BytedanceWebview/d8a21c6"
)
# What an ordinary phone browser sends: the classifier's cost for the traffic that gets the 302.
PLAIN_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)


def measure_escape(
    work: Path, *, redis_url: str, workers: int, links: int, opts: BenchOptions, inapp: bool
) -> dict:
    """clicktrail with every link `open_in: "browser"`: an in-app agent (`inapp`: every answer is the 200
    escape page, its click checked like a 302's) or an ordinary phone browser's (every answer a 302, after
    the classifier looked at the agent). The links are re-seeded as they were afterwards."""
    seed_links(redis_url, links, open_in="browser")
    try:
        return measure_clicktrail(
            work,
            redis_url=redis_url,
            workers=workers,
            links=links,
            opts=opts,
            user_agent=INAPP_USER_AGENT if inapp else PLAIN_USER_AGENT,
            answer_status=200 if inapp else 302,
        )
    finally:
        seed_links(redis_url, links)


def _wait_clicktrail_workers(proc, redis_url: str, workers: int) -> bool:
    """Every worker, once its lifespan has started, tails the link-change stream with a blocking XREAD:
    wait until that many readers are seen, so that no run starts with a worker still importing. False if
    that is not seen in time."""
    client = redis.Redis.from_url(redis_url)
    try:

        def watching() -> bool:
            return sum(1 for c in client.client_list() if c.get("cmd") == "xread") >= workers

        procs.wait_until(proc, watching, "every clicktrail worker", timeout_s=WORKER_READY_TIMEOUT_S)
        return True
    except TimeoutError:
        return False
    finally:
        client.close()


def _wait_warm(proc, port: int, workers: int) -> bool:
    """Every worker has preloaded its link cache (the gauge `clicktrail_link_cache_warming` is 0 with all
    workers reporting): a run measures warm workers, as a deployment's steady state. False if not in time
    (the preload stops by itself after CLICKTRAIL_LINK_CACHE_PRELOAD_MAX_S)."""

    def warm() -> bool:
        try:
            with urllib.request.urlopen(f"http://{procs.LOOPBACK}:{port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return False
        values = dict(
            line.split(" ", 1)
            for line in text.splitlines()
            if line.startswith(("clicktrail_workers ", "clicktrail_link_cache_warming "))
        )
        return (
            float(values.get("clicktrail_workers", 0)) >= workers
            and float(values.get("clicktrail_link_cache_warming", 1)) == 0
        )

    try:
        procs.wait_until(proc, warm, "every worker's link cache preload", timeout_s=WARM_TIMEOUT_S)
        return True
    except TimeoutError:
        return False


def _redis_pid(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _clear_clicks(redis_url: str) -> None:
    from core.keys import Keys

    keys = Keys(REDIS_PREFIX)
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(keys.clicks, keys.recorder_seq)
    finally:
        client.close()


def _probe(port: int, click_param: str) -> str:
    status, headers, _ = procs.http_get(port, "/" + code_for(0))
    if status != 302:
        raise RuntimeError(f"probe redirect answered {status}, expected 302")
    ids = parse_qs(urlsplit(headers["location"]).query).get(click_param)
    if not ids:
        raise RuntimeError(f"probe Location has no {click_param}: {headers['location']}")
    return ids[0]


def summarize_metrics(text: str) -> dict:
    """A few server-side figures from one /metrics scrape (with several workers, the one that answers adds
    its peers' counters, published every second)."""
    if not text:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                samples[sample.name + "".join(f"[{v}]" for v in sample.labels.values())] = sample.value

    def ratio(num: str, den: str, scale: float = 1.0, digits: int = 2) -> float | None:
        return round(scale * samples.get(num, 0) / samples[den], digits) if samples.get(den) else None

    hits = samples.get("clicktrail_link_cache_total[hit]", 0)
    misses = samples.get("clicktrail_link_cache_total[miss]", 0)
    return {
        "workers_reporting": samples.get("clicktrail_workers"),
        "redis_writes": samples.get("clicktrail_click_batch_size_count"),
        "clicks_per_redis_write": ratio(
            "clicktrail_click_batch_size_sum", "clicktrail_click_batch_size_count"
        ),
        "server_latency_mean_ms": ratio(
            "clicktrail_redirect_latency_seconds_sum", "clicktrail_redirect_latency_seconds_count", 1000, 3
        ),
        "link_cache_hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
        "clicks_spooled": samples.get("clicktrail_clicks_total[spooled]"),
    }


def _wrk(
    port: int,
    links: int,
    opts: BenchOptions,
    ids_file: Path | None = None,
    cpu: dict[str, int] | None = None,
    sequential: bool = False,
    user_agent: str = "",
) -> dict:
    """wrk against one server; `cpu` names process groups (by leader pid) whose cores used are reported."""
    figures = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    meter = procs.CpuMeter(cpu or {})
    meter.start()
    figures.update(
        run_wrk(
            f"http://{procs.LOOPBACK}:{port}",
            duration_s=opts.duration_s,
            connections=opts.connections,
            threads=opts.threads,
            links=links,
            seed=opts.seed,
            click_param=opts.click_param,
            ids_file=ids_file,
            sequential=sequential,
            user_agent=user_agent,
            mix=opts.mix,
        )
    )
    figures["ended_at_ms"] = time.time_ns() // 1_000_000
    figures["cores_used"] = meter.stop() | {"wrk": figures.pop("wrk_cores")}
    server_cores = figures["cores_used"].get("server")
    # Requests per CPU-second of the server's own processes: on a shared machine, where the server gets
    # whatever share of the cores the others leave, this compares efficiency better than requests/s.
    figures["requests_per_server_cpu_s"] = (
        round(figures["requests_per_s"] / server_cores) if server_cores else None
    )
    return figures
