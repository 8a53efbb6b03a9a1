"""Scenario 9: redirects while the management API is busy with its heaviest legal requests. Paced redirect
load first alone (the same-run baseline), then again while a separate process keeps the API busy: full
5,000-product catalog PUTs of about 7 MiB (the body limit is 8 MiB), catalog searches across every
merchant (two clients), rate updates with 1,000 creator and 1,000 category rates, each back to back, and
secret rotations 20 times a second, all on the one worker that answers the redirects.

Verdict: every redirect answered 302 and stored exactly once; no API request answered 5xx (each of the
four kinds answered its success status); and redirect p99 under API load within
max(P99_FACTOR x baseline, baseline + P99_SLACK_MS). The API runs in its own process (`main()` below) so
that building 7 MiB bodies does not slow the load client's loop and pass for server latency."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.common import WARMUP_S, Run, check_answers, drain_and_count, load, run_async
from loadtests.load import LoadStats, percentile
from loadtests.system import ADMIN_TOKEN
from loadtests.verdict import Verdict

# The fault scenarios' ratio, or an absolute allowance, whichever is larger. Every step the API takes on
# the loop is under a few milliseconds (the largest: finding the products' bounds in an 8 MiB body, ~5 ms),
# so what remains is sharing two cores: the API client, Redis, ClickHouse, the ingester and the load client
# run beside the worker, which under API load is CPU-bound (see serve_cpu_share). Measured here: redirect
# p99 16-26 ms under API load against 4-13 ms alone; 180 ms before this bound existed (issue 9, item 6).
P99_FACTOR = 3.0
P99_SLACK_MS = 20.0
MERCHANTS = 3
CHILD = "import sys; from loadtests.api_load import main; main(sys.argv[1:])"
REPO = Path(__file__).resolve().parents[1]
SUCCESS = {"put_catalog": 200, "search": 200, "put_rates": 200, "rotate": 201}
# Clients send one request after another, flat out, except rotations: a cheap request, whose cost was the
# HMACs per webhook that unbounded secrets added (now at most two), not the request itself.
PACED_S = {"rotate": 0.05}
QUERIES = ["", "q=trail", "q=model%2012", "q=wool+cap", "category=cat3", "q=zzz", "merchant_id=m1&q=pro"]
WORDS = ["trail", "running", "shoe", "cap", "jacket", "wool", "sock", "bag", "light", "pro"]


@dataclass
class ApiResults:
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # kind → {status: count}
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)


def catalog_body(merchant_id: str, products: int, url_chars: int) -> bytes:
    """A legal catalog PUT: `products` products with long titles and URLs."""
    items = []
    for i in range(products):
        title = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" model {i} "
        items.append(
            {
                "sku": f"SKU-{i:05d}",
                "title": (title + "x" * 200)[:200],
                "url": f"https://{merchant_id}.example.com/{'p' * url_chars}/{i}",
                "category": f"cat{i % 20}",
                "price_minor": 1000 + i,
                "currency": "EUR",
                "rate_bps": 500 + i % 100,
            }
        )
    return json.dumps(items).encode()


def rates_body() -> bytes:
    return json.dumps(
        {
            "default_rate_bps": 800,
            "categories": {f"c{i}": i % 10_000 for i in range(1_000)},
            "creators": {f"creator{i}": 1000 + i for i in range(1_000)},
        }
    ).encode()


def api_load(run: Run) -> Verdict:
    verdict = Verdict("api_load", run.mode)
    base_s, busy_s = run.pick((10, 20), (3, 4))
    products, url_chars = run.pick((5_000, 1_200), (1_000, 300))
    system = run.system()
    try:
        system.start()
        codes = system.make_links(20)
        for m in range(MERCHANTS):
            system.admin("POST", "/api/merchants", {
                "merchant_id": f"m{m}", "name": f"M{m}", "domains": [f"m{m}.example.com"],
                "currency": "EUR", "default_rate_bps": 800,
            })  # fmt: skip
            status, data = system.request(
                "PUT", f"/api/merchants/m{m}/catalog", catalog_body(f"m{m}", products, url_chars),
                {"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout_s=120,
            )  # fmt: skip
            if status != 200:
                raise RuntimeError(f"catalog setup: {status} {data[:200]!r}")

        pid = system.serve_proc.pid if system.serve_proc else 0
        cpu: dict[str, float] = {}

        async def main() -> tuple[LoadStats, LoadStats]:
            started = _cpu_s(pid)
            base = await load(system, codes, base_s, run, warmup_s=WARMUP_S)
            cpu["baseline"] = (_cpu_s(pid) - started) / (base_s + WARMUP_S)
            out = run.root / "api.json"
            args = [str(system.port), str(busy_s + 1), str(products), str(url_chars), str(out)]
            child = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=REPO)
            try:
                await asyncio.sleep(1.0)  # the child builds its bodies and starts its clients
                started = _cpu_s(pid)
                busy = await load(system, codes, busy_s, run)
                cpu["with_api_load"] = (_cpu_s(pid) - started) / busy_s
                await asyncio.to_thread(child.wait, 120)
            finally:
                if child.poll() is None:
                    child.kill()
            return base, busy

        base, busy = run_async(main())
        api = ApiResults(**json.loads((run.root / "api.json").read_text()))
        verdict.figures["serve_cpu_share"] = {k: round(v, 2) for k, v in cpu.items()}
        _verdict(verdict, run, base, busy, api)
        drain_and_count(verdict, system, base.click_ids + busy.click_ids, run.pick(120, 40))
    finally:
        system.close()
    return verdict


def _verdict(verdict: Verdict, run: Run, base: LoadStats, busy: LoadStats, api: ApiResults) -> None:
    check_answers(verdict, base, busy)
    b, f = base.summary(), busy.summary()
    limit_ms = max(P99_FACTOR * b["p99_ms"], b["p99_ms"] + P99_SLACK_MS)
    verdict.figures.update(baseline=b, with_api_load=f, p99_limit_ms=round(limit_ms, 2))
    verdict.check(
        f"redirect p99 under API load within max({P99_FACTOR:g}x, +{P99_SLACK_MS:g} ms) of the baseline",
        f["p99_ms"] <= limit_ms,
        f"p99 {f['p99_ms']:.2f} ms vs {b['p99_ms']:.2f} ms alone (limit {limit_ms:.2f} ms); "
        f"p50 {f['p50_ms']:.2f} vs {b['p50_ms']:.2f} ms, max {f['max_ms']:.0f} ms",
        enforced=not run.smoke,
    )
    timings = {
        kind: {
            "p50_ms": round(percentile(sorted(v), 0.5), 1),
            "p99_ms": round(percentile(sorted(v), 0.99), 1),
        }
        for kind, v in api.latencies_ms.items()
    }
    verdict.figures.update(api_statuses=api.statuses, api_timings=timings)
    five = {k: c for k, c in api.statuses.items() if any(int(s) >= 500 or s == "0" for s in c)}
    wrong = {k: c for k, c in api.statuses.items() if set(c) != {str(SUCCESS[k])}}
    verdict.check(
        "API busy with every kind of request, no 5xx, each answered its success status",
        set(api.statuses) == set(SUCCESS) and not five and not wrong,
        f"{ {k: sum(c.values()) for k, c in api.statuses.items()} }; 5xx or failed: {five or 'none'}; "
        f"other statuses: {wrong or 'none'}",
    )


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the API process ------------------------------------------------------------------------------


def _client(port: int, kind: str, until: float, make, results: ApiResults, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    counts: Counter = Counter()
    latencies: list[float] = []
    n = 0
    while time.monotonic() < until:
        method, path, body = make(n)
        n += 1
        if kind in PACED_S:
            time.sleep(PACED_S[kind])
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
            response = conn.getresponse()
            response.read()
            counts[str(response.status)] += 1
        except (OSError, http.client.HTTPException):
            counts["0"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append((time.monotonic() - started) * 1000)
    conn.close()
    with lock:  # two clients of one kind add up
        merged = Counter(results.statuses.get(kind, {})) + counts
        results.statuses[kind] = dict(merged)
        results.latencies_ms[kind] = results.latencies_ms.get(kind, []) + latencies


def main(argv: list[str]) -> None:
    """PORT SECONDS PRODUCTS URL_CHARS OUT_JSON: keep the API busy for SECONDS, write the results."""
    port, seconds, products, url_chars, out = (
        int(argv[0]),
        float(argv[1]),
        int(argv[2]),
        int(argv[3]),
        argv[4],
    )
    bodies = [catalog_body(f"m{m}", products, url_chars) for m in range(MERCHANTS)]
    rates = rates_body()
    makers = {
        "put_catalog": lambda n: ("PUT", f"/api/merchants/m{n % MERCHANTS}/catalog", bodies[n % MERCHANTS]),
        "search": lambda n: ("GET", f"/api/catalog?{QUERIES[n % len(QUERIES)]}", None),
        "put_rates": lambda n: ("PUT", f"/api/merchants/m{n % MERCHANTS}/rates", rates),
        "rotate": lambda n: ("POST", f"/api/merchants/m{n % MERCHANTS}/secrets", None),
    }
    results, lock = ApiResults(), threading.Lock()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(port, kind, until, make, results, lock))
        for kind, make in [*makers.items(), ("search", makers["search"])]  # two searching clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Path(out).write_text(json.dumps(dataclasses.asdict(results)))
