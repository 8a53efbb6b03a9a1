"""(d) the dashboard's cost to the redirect: `clicktrail serve` measured like (c), while `clients` browsers
load dashboard pages in a loop from the same server (issue 15: within 5 % of (c), same run), in rounds
that alternate (c) and (d).

Each client signs in once with a creator API key (the creator of the benchmark's links, so the links page
lists all of them), then GETs the pages of DASH_PAGES in turn, back to back (`pause_ms` 0: the harshest
case, a page as soon as the last one arrived) or with a pause between pages (a person reading). The pages
read a private ClickHouse database, migrated before and dropped after. Figures: the redirect's as (c), plus
pages loaded, page errors and page latency."""

from __future__ import annotations

import contextlib
import re
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks import procs
from benchmarks.systems import CREATOR_ID, BenchOptions, Served, measure_clicktrail

CLICKHOUSE_SERVER = "clickhouse://default:@127.0.0.1:9000"
# What a creator opens: the overview (clicks per day, countries, devices: ClickHouse rollups), the links
# (every link of the creator, from Redis) and the earnings (ClickHouse ledger).
DASH_PAGES = tuple(f"/dash/creators/{CREATOR_ID}{page}" for page in ("", "/links", "/earnings"))
LOGIN_PATH = "/dash/login"
PAGE_TIMEOUT_S = 10.0
_CSRF_FIELD = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


def measure_dashboard(work: Path, *, redis_url: str, workers: int, links: int, opts: BenchOptions) -> dict:
    """`opts.dash_rounds` rounds, each (c) then (d) back to back, so that both see the same machine (a
    shared machine's load drifts by more than the 5 % to be seen). Figures: the last round's (d), with
    requests/s the median of the (d) rounds and `baseline_requests_per_s` the median of the (c) rounds:
    their ratio is d/c. The click check must pass in every round."""
    from core.clickhouse import NativeClickHouse
    from core.migrate import migrate

    database = f"ct_bench_dash_{secrets.token_hex(4)}"
    backend = NativeClickHouse(f"{CLICKHOUSE_SERVER}/{database}")
    env = {"CLICKTRAIL_CLICKHOUSE_URL": f"{CLICKHOUSE_SERVER}/{database}"}
    rounds: list[tuple[dict, dict]] = []
    loaders: list[_Loader] = []
    try:
        migrate(backend, log=lambda *_: None)
        for n in range(opts.dash_rounds):
            alone = measure_clicktrail(
                work / f"c{n}", redis_url=redis_url, workers=workers, links=links, opts=opts
            )
            during = _readers(loaders, opts.dash_clients, opts.dash_pause_ms)
            loaded = measure_clicktrail(
                work / f"d{n}", redis_url=redis_url, workers=workers, links=links, opts=opts, extra_env=env,
                during=during,
            )  # fmt: skip
            rounds.append((alone, loaded))
    finally:
        with contextlib.suppress(Exception):
            backend.execute(f"DROP DATABASE IF EXISTS {database}")
        backend.close()
    figures = dict(rounds[-1][1])
    figures["requests_per_s"] = statistics.median(d["requests_per_s"] for _, d in rounds)
    figures["baseline_requests_per_s"] = statistics.median(c["requests_per_s"] for c, _ in rounds)
    # Per CPU-second of the server's processes: on a shared machine the server gets what the others leave,
    # so throughput swings between rounds; what the pages cost shows as redirects per CPU-second.
    per_cpu = [(c["requests_per_server_cpu_s"], d["requests_per_server_cpu_s"]) for c, d in rounds]
    if all(c and d for c, d in per_cpu):
        figures["requests_per_server_cpu_s"] = statistics.median(d for _, d in per_cpu)
        figures["baseline_requests_per_server_cpu_s"] = statistics.median(c for c, _ in per_cpu)
    figures["rounds"] = [
        {"c_requests_per_s": c["requests_per_s"], "d_requests_per_s": d["requests_per_s"],
         "c_requests_per_server_cpu_s": c["requests_per_server_cpu_s"],
         "d_requests_per_server_cpu_s": d["requests_per_server_cpu_s"],
         "c_p99_ms": c["latency_ms"]["p99"], "d_p99_ms": d["latency_ms"]["p99"]}
        for c, d in rounds
    ]  # fmt: skip
    figures["check"] = dict(
        figures["check"], passed=all(c["check"]["passed"] and d["check"]["passed"] for c, d in rounds)
    )
    figures["dashboard"] = summary(loaders, opts.dash_clients, opts.dash_pause_ms)
    return figures


def _readers(loaders: list[_Loader], clients: int, pause_ms: int):
    """The `during` of one (d) round: `clients` signed-in readers for the length of wrk's run."""

    @contextlib.contextmanager
    def during(served: Served) -> Iterator[None]:
        key = _creator_key(served)
        mine = [_Loader(served.port, key, pause_ms) for _ in range(clients)]
        loaders.extend(mine)
        for loader in mine:
            loader.warm_up()
        for loader in mine:
            loader.start()
        try:
            yield
        finally:
            for loader in mine:
                loader.stop()

    return during


def summary(loaders: list[_Loader], clients: int, pause_ms: int) -> dict:
    latencies = sorted(ms for loader in loaders for ms in loader.latencies_ms)
    errors = [e for loader in loaders for e in loader.errors]
    return {
        "clients": clients,
        "pause_ms": pause_ms,
        "pages": DASH_PAGES,
        "pages_loaded": len(latencies),
        "page_errors": len(errors),
        "first_errors": errors[:3],
        "page_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "max": round(latencies[-1], 1) if latencies else None,
        },
    }


def _creator_key(served: Served) -> str:
    """An API key of the links' creator, issued by the admin through the API."""
    response = httpx.post(
        f"http://{procs.LOOPBACK}:{served.port}/api/keys",
        json={"creator_id": CREATOR_ID},
        headers={"authorization": f"Bearer {served.env['CLICKTRAIL_ADMIN_TOKEN']}"},
        timeout=PAGE_TIMEOUT_S,
    )
    response.raise_for_status()
    return response.json()["key"]


class _Loader(threading.Thread):
    """One browser: signs in through the form (its CSRF token included), then loads pages until stopped."""

    def __init__(self, port: int, key: str, pause_ms: int) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=f"http://{procs.LOOPBACK}:{port}", timeout=PAGE_TIMEOUT_S)
        self.key = key
        self.pause_s = pause_ms / 1000
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self._stopped = threading.Event()

    def sign_in(self) -> None:
        form = self.client.get(LOGIN_PATH)
        token = _CSRF_FIELD.search(form.text)
        data = {"key": self.key} | ({"csrf_token": token.group(1)} if token else {})
        answer = self.client.post(LOGIN_PATH, data=data)
        if answer.status_code not in (302, 303) or not self.client.cookies:
            raise RuntimeError(f"dashboard sign-in answered {answer.status_code}")

    def warm_up(self) -> None:
        """Sign in and load each page once before wrk starts: the run measures a server that has served
        its pages before (templates compiled, modules imported, ClickHouse connected), not its first page."""
        try:
            self.sign_in()
            for path in DASH_PAGES:
                self.client.get(path)
        except Exception as exc:  # reported in the figures, never hidden
            self.errors.append(f"sign-in: {type(exc).__name__}: {exc}")
            self._stopped.set()

    def run(self) -> None:
        n = 0
        while not self._stopped.is_set():
            path = DASH_PAGES[n % len(DASH_PAGES)]
            n += 1
            started = time.perf_counter()
            try:
                status = self.client.get(path).status_code
            except httpx.HTTPError as exc:
                self.errors.append(f"{path}: {type(exc).__name__}")
                continue
            if status != 200:
                self.errors.append(f"{path}: {status}")
                continue
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            if self.pause_s:
                self._stopped.wait(self.pause_s)

    def stop(self) -> None:
        self._stopped.set()
        self.join(PAGE_TIMEOUT_S + 1)
        self.client.close()
