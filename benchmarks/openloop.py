"""An open-loop HTTP client: requests are sent on a fixed schedule (`rate` per second) whatever the server
does, and each latency is measured from the request's *scheduled* send time. A closed-loop client (wrk)
waits for an answer before sending the next request, so a slow server also slows the load and its stalls
vanish from the percentiles (coordinated omission); here a stall shows as the queue it causes.

    .venv/bin/python -m benchmarks.openloop --port 8000 --rate 5000 --duration 10 [--links 1000]

Keep-alive connections (`--connections`) carry one request at a time; a scheduled request that finds every
connection busy waits in a queue (its wait counts in its latency). After `duration` no new request is
scheduled and the client waits up to DRAIN_TIMEOUT_S for every one scheduled before to be answered.
asyncio protocols on uvloop rather than streams: the client must cost far less CPU than the server it
drives on the same cores (its own cores used are reported), and it runs as CLIENT_PROCS processes, each
with its share of the rate and connections. Prints one JSON line: latencies in ms from the scheduled time
(`latency_ms`) and from the actual send (`service_ms`), statuses, unanswered requests, client cores, and
(`stalls`) the server's event-loop lag and GC pauses over the run: its /metrics histograms scraped before
and after, subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import procs
from benchmarks.codes import code_for

# Requests still unanswered this long after the schedule ended are counted as timeouts.
DRAIN_TIMEOUT_S = 10.0
# The scheduler wakes at most this often and sends every request due by then; a request's latency still
# counts from its own scheduled time, so this adds at most TICK_S to it (and is counted, not hidden).
# uvloop's clock and timers count whole milliseconds: a wake-up asked for 0.5 ms ahead rounds to 0 ms or to
# 1 ms by the float error of `now + 0.0005 - now`, which changes with the machine's uptime. At 0 it fired
# at once, again and again until the millisecond turned, and each client process spun a whole core (seen
# at 21 h of uptime: 1.4 cores at 25 % of the rate, the server starved).
TICK_S = 0.001
# Up to this many links, every request line is built once up front.
PREBUILT_MAX = 100_000
# Client processes sharing the rate: one Python process tops out below clicktrail's maximum.
CLIENT_PROCS = 2
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p99.9": 0.999}
# Loop lags counted as stalls from these, in ms (each is a bound of clicktrail_event_loop_lag_seconds).
STALL_THRESHOLDS_MS = (1, 5, 20)
LAG_METRIC = "clicktrail_event_loop_lag_seconds"
GC_METRIC = "clicktrail_gc_pause_seconds"
BATCH_METRIC = "clicktrail_click_batch_size"  # the recorder's group commit: writes and clicks per write
# Issue 16's tail target is the p99 at this share of the maximum; the report profiles the worker there.
TARGET_SHARE = 0.75


class _Conn(asyncio.Protocol):
    def __init__(self, client: OpenLoopClient) -> None:
        self.client = client
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.scheduled = self.sent = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client.ready(self)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            self.buf += data
            data = bytes(self.buf)
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf[:] = data
            return
        head = data[:end]
        at = head.find(b"content-length:")
        if at < 0:
            at = head.lower().find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop >= 0 else end]) if at >= 0 else 0
        if len(data) < end + 4 + length:
            self.buf[:] = data
            return
        self.buf[:] = data[end + 4 + length :]
        self.client.answered(self, int(head[9:12]), head)

    def connection_lost(self, exc) -> None:
        self.client.lost(self)


class OpenLoopClient:
    def __init__(
        self, host: str, port: int, rate: float, duration_s: float, links: int, seed: int, click_param: str
    ) -> None:
        self.host, self.port, self.rate, self.duration_s = host, port, rate, duration_s
        self.links, self.rng = links, random.Random(seed)
        self.prebuilt = [self._request(i) for i in range(links)] if links <= PREBUILT_MAX else None
        self.marker = f"{click_param}=".encode()
        self.idle: deque[_Conn] = deque()
        self.queue: deque[float] = deque()  # scheduled times waiting for a free connection
        self.latencies: list[float] = []
        self.service: list[float] = []
        self.statuses: dict[int, int] = {}
        self.ids: list[str] = []
        self.scheduled = self.in_flight = self.lost_requests = self.max_queue = 0
        self.all_done = asyncio.Event()
        self.schedule_over = False
        # The client's own stalls: how late its scheduler woke (ms thresholds as the server's), and worst.
        self.wake_at = 0.0
        self.late_wakes = dict.fromkeys(STALL_THRESHOLDS_MS, 0)
        self.latest_wake_s = 0.0

    async def run(self, connections: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        self.t0 = self.wake_at = loop.time() + 0.05
        self.total = int(self.rate * self.duration_s)
        loop.call_at(self.t0, self._tick, loop)
        cpu0, wall0 = time.process_time(), time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_done.wait(), self.duration_s + DRAIN_TIMEOUT_S)
        self.cpu_s, self.wall_s = time.process_time() - cpu0, time.monotonic() - wall0
        for conn in self.idle:
            conn.transport.close()

    def _tick(self, loop) -> None:
        """Issue every request whose scheduled time has come, then wake at the next one (at most every
        TICK_S: a wake-up per request would cost the client more CPU than the requests themselves)."""
        now = loop.time()
        self._count_late(now - self.wake_at)
        while self.scheduled < self.total:
            at = self.t0 + self.scheduled / self.rate
            if at > now:
                self.wake_at = max(at, now + TICK_S)
                loop.call_at(self.wake_at, self._tick, loop)
                return
            self.scheduled += 1
            if self.idle:
                self._send(self.idle.popleft(), at)
            else:
                self.queue.append(at)
                self.max_queue = max(self.max_queue, len(self.queue))
        self.schedule_over = True
        self._maybe_done()

    def _count_late(self, late_s: float) -> None:
        self.latest_wake_s = max(self.latest_wake_s, late_s)
        for ms in STALL_THRESHOLDS_MS:
            if late_s > ms / 1000:
                self.late_wakes[ms] += 1

    def _send(self, conn: _Conn, scheduled: float) -> None:
        conn.scheduled, conn.sent = scheduled, time.monotonic()
        self.in_flight += 1
        index = self.rng.randrange(self.links)
        conn.transport.write(self.prebuilt[index] if self.prebuilt else self._request(index))

    def _request(self, index: int) -> bytes:
        return f"GET /{code_for(index)} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()

    def ready(self, conn: _Conn) -> None:
        if self.queue:
            self._send(conn, self.queue.popleft())
        else:
            self.idle.append(conn)

    def answered(self, conn: _Conn, status: int, head: bytes) -> None:
        now = time.monotonic()
        self.in_flight -= 1
        self.latencies.append(now - conn.scheduled)
        self.service.append(now - conn.sent)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        at = head.find(self.marker)
        if status == 302 and at >= 0:
            start = at + len(self.marker)
            end = min(
                (i for i in (head.find(b"&", start), head.find(b"\r\n", start)) if i >= 0), default=None
            )
            self.ids.append(head[start:end].decode())
        self.ready(conn)
        self._maybe_done()

    def lost(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        elif conn.transport is not None and conn.sent:
            self.in_flight -= 1
            self.lost_requests += 1
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.schedule_over and not self.in_flight and not self.queue:
            self.all_done.set()


def percentiles_ms(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    out = {
        name: round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 3)
        for name, q in PERCENTILES.items()
    }
    return out | {"max": round(values[-1] * 1000, 3), "mean": round(sum(values) / len(values) * 1000, 3)}


async def _worker(args) -> None:
    """One client process: its raw figures go to `--worker-out` as JSON, merged by run_openloop()."""
    client = OpenLoopClient(
        args.host, args.port, args.rate, args.duration, args.links, args.seed, args.click_param
    )
    await client.run(args.connections)
    raw = {
        "scheduled": client.scheduled,
        "lost": client.lost_requests,
        "max_queue": client.max_queue,
        "latency_us": [round(x * 1e6) for x in client.latencies],
        "service_us": [round(x * 1e6) for x in client.service],
        "statuses": client.statuses,
        "ids": client.ids,
        "cpu_s": client.cpu_s,
        "wall_s": client.wall_s,
        "late_wakes": client.late_wakes,
        "latest_wake_s": client.latest_wake_s,
    }
    Path(args.worker_out).write_text(json.dumps(raw))


def scrape_histograms(port: int) -> dict:
    """The server's stall histograms now: {(metric, generation or ""): {"buckets": {le: cumulative},
    "count": n, "sum": s}}; empty if the server does not export them (or /metrics fails)."""
    try:
        text = procs.http_get(port, "/metrics", timeout_s=5)[2].decode()
    except OSError:
        return {}
    found: dict = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (LAG_METRIC, GC_METRIC, BATCH_METRIC):
            continue
        for sample in family.samples:
            key = f"{family.name}{sample.labels.get('generation', '')}"
            series = found.setdefault(key, {"buckets": {}, "count": 0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                series["buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                series["count"] = sample.value
            elif sample.name.endswith("_sum"):
                series["sum"] = sample.value
    return found


def _delta(before: dict, after: dict) -> dict:
    old = before or {"buckets": {}, "count": 0, "sum": 0.0}
    return {
        "buckets": {le: n - old["buckets"].get(le, 0) for le, n in after["buckets"].items()},
        "count": after["count"] - old["count"],
        "sum": after["sum"] - old["sum"],
    }


def _upper_bound_ms(series: dict, q: float) -> float | None:
    """The bucket bound (ms) under which a share `q` of the observations fall; None if none, inf if the
    last bucket (the histogram has no finer figure: a bound, not an estimate)."""
    if not series["count"]:
        return None
    for le, cumulative in sorted(series["buckets"].items()):
        if cumulative >= q * series["count"]:
            return round(le * 1000, 3)
    return None


def stall_figures(before: dict, after: dict) -> dict | None:
    """What the server's loop and collector did between two scrapes (scrape_histograms)."""
    if LAG_METRIC not in after:
        return None
    lag = _delta(before.get(LAG_METRIC), after[LAG_METRIC])
    out = {
        "probes": int(lag["count"]),
        # Probe wake-ups later than each threshold: each is a loop held that long (at least).
        **{
            f"over_{ms}ms": int(lag["count"] - lag["buckets"].get(ms / 1000, 0)) for ms in STALL_THRESHOLDS_MS
        },
        "lag_total_ms": round(lag["sum"] * 1000, 1),
        "lag_p99_le_ms": _upper_bound_ms(lag, 0.99),
        "lag_max_le_ms": _upper_bound_ms(lag, 1.0),
        "gc": {},
    }
    if BATCH_METRIC in after:
        writes = _delta(before.get(BATCH_METRIC), after[BATCH_METRIC])
        out["recorder_writes"] = int(writes["count"])
        out["clicks_per_write"] = round(writes["sum"] / writes["count"], 1) if writes["count"] else None
    for generation in ("0", "1", "2"):
        key = GC_METRIC + generation
        if key in after:
            pauses = _delta(before.get(key), after[key])
            out["gc"][generation] = {
                "collections": int(pauses["count"]),
                "pause_total_ms": round(pauses["sum"] * 1000, 1),
                "pause_max_le_ms": _upper_bound_ms(pauses, 1.0),
            }
    return out


def server_cpu_us(run: dict) -> float | None:
    """The server's CPU per answered request over an open-loop run (scenarios.measure_open_loop) or a wrk
    run (systems.measure_clicktrail): the two side by side say how near its own capacity an offered rate
    put the worker. From the server's CPU seconds where the open-loop run kept them: the meter's window
    also holds the clients' start and the percentiles' reckoning, so its cores over the clients' answered
    rate read about 4 % low (older report JSONs keep only those)."""
    cpu_s, answered = run.get("server_cpu_s"), run.get("answered")
    if cpu_s and answered:
        return round(cpu_s / answered * 1e6, 1)
    cores = run.get("cores_used", {}).get("server")
    rate = run.get("answered_per_s", run.get("requests_per_s"))
    return round(cores / rate * 1e6, 1) if cores and rate else None


def target_point(open_loop: dict) -> dict | None:
    """The run at the target's share among report section 2's points (`points`), if any."""
    return next((p for p in open_loop.get("points", []) if p["share_of_max"] == TARGET_SHARE), None)


def target_points(open_loop: dict) -> list[dict]:
    """Every run at the target's share that the target is judged by: section 2's point, then the runs
    made again right after it (`target_repeats`; a report from before them has the one)."""
    first = target_point(open_loop)
    return ([first] if first is not None else []) + list(open_loop.get("target_repeats", []))


def profiled_runs(open_loop: dict) -> tuple[dict, dict, bool] | None:
    """(the open-loop run, wrk's run at the maximum, whether they are the target's own runs) whose perf
    profiles section 2 compares. Since the runs made for it (`profile_runs`), the target's figures are not
    taken under sampling; a report from before sampled its own maximum and 75 % runs."""
    made = open_loop.get("profile_runs")
    if made:
        return made["point"], made["max_run"], False
    point = target_point(open_loop)
    if point is not None and ("profile" in point or "profile_error" in point):
        return point, open_loop.get("max_run", {}), True
    return None


def stall_row(stalls: dict | None) -> str:
    """One line of the stall figures, for logs."""
    if not stalls:
        return "stalls: not exported"
    over = " ".join(f">{ms}ms {stalls[f'over_{ms}ms']}" for ms in STALL_THRESHOLDS_MS)
    gcs = " ".join(
        f"gen{g} {v['collections']}x {v['pause_total_ms']}ms (max<={v['pause_max_le_ms']})"
        for g, v in stalls["gc"].items()
    )
    return (
        f"stalls of {stalls['probes']} probes: {over}, p99<={stalls['lag_p99_le_ms']} "
        f"max<={stalls['lag_max_le_ms']} ms, total {stalls['lag_total_ms']} ms; gc {gcs}; "
        f"recorder {stalls.get('recorder_writes')} writes of {stalls.get('clicks_per_write')} clicks"
    )


def run_openloop(
    port: int,
    *,
    rate: float,
    duration_s: float,
    links: int,
    connections: int,
    seed: int = 1,
    click_param: str = "ct_click",
    ids_file: Path | None = None,
    procs: int = CLIENT_PROCS,
) -> dict:
    """Run the client as `procs` processes (each a share of the rate and the connections: one Python
    process cannot send 15,000 requests/s and read the answers) and merge their figures."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="openloop-") as tmp:
        outs = [Path(tmp) / f"worker-{n}.json" for n in range(procs)]
        cmds = [
            [
                sys.executable,
                "-m",
                "benchmarks.openloop",
                "--port",
                str(port),
                "--rate",
                str(rate / procs),
                "--duration",
                str(duration_s),
                "--links",
                str(links),
                "--connections",
                str(max(1, connections // procs)),
                "--seed",
                str(seed * 100 + n),
                "--click-param",
                click_param,
                "--worker-out",
                str(out),
            ]
            for n, out in enumerate(outs)
        ]
        before = scrape_histograms(port)
        workers = [subprocess.Popen(cmd, cwd=root, stderr=subprocess.PIPE, text=True) for cmd in cmds]
        for worker in workers:
            _, err = worker.communicate(timeout=duration_s + DRAIN_TIMEOUT_S + 60)
            if worker.returncode != 0:
                raise RuntimeError(f"open-loop client failed ({worker.returncode}): {err.strip()[-2000:]}")
        stalls = stall_figures(before, scrape_histograms(port))
        raws = [json.loads(out.read_text()) for out in outs]
    latencies = [x / 1e6 for raw in raws for x in raw["latency_us"]]
    statuses: dict[int, int] = {}
    for raw in raws:
        for status, count in raw["statuses"].items():
            statuses[int(status)] = statuses.get(int(status), 0) + count
    if ids_file is not None:
        ids_file.write_text("".join(i + "\n" for raw in raws for i in raw["ids"]))
    scheduled = sum(raw["scheduled"] for raw in raws)
    return {
        "offered_rate_per_s": rate,
        "duration_s": duration_s,
        "connections": connections,
        "client_processes": procs,
        "scheduled": scheduled,
        "answered": len(latencies),
        "answered_per_s": round(len(latencies) / max(raw["wall_s"] for raw in raws), 1),
        "unanswered": scheduled - len(latencies),
        "connections_lost_with_request": sum(raw["lost"] for raw in raws),
        "max_client_queue": max(raw["max_queue"] for raw in raws),
        "latency_ms": percentiles_ms(latencies),
        "service_ms": percentiles_ms([x / 1e6 for raw in raws for x in raw["service_us"]]),
        "statuses": dict(sorted(statuses.items())),
        "ids_written": sum(len(raw["ids"]) for raw in raws),
        # CPU of the client processes over the schedule (and the drain after it), in cores.
        "client_cores": round(sum(raw["cpu_s"] / raw["wall_s"] for raw in raws), 2),
        # The server's loop lag and GC pauses over the run (None: it does not export them).
        "stalls": stalls,
        # The client's own: scheduler wake-ups later than each threshold (its requests then go late and
        # count as latency though the server did nothing wrong), and the latest (libuv timers: 1 ms grain).
        "client_stalls": {
            **{f"over_{ms}ms": sum(raw["late_wakes"][str(ms)] for raw in raws) for ms in STALL_THRESHOLDS_MS},
            "max_ms": round(max(raw["latest_wake_s"] for raw in raws) * 1000, 3),
        },
        "command": " ".join(["python", *cmds[0][1:]]) + (f"  (x {procs} processes)" if procs > 1 else ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.openloop", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second, offered (in all)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of schedule")
    parser.add_argument("--links", type=int, default=1000, help="codes code(0)..code(links-1), at random")
    parser.add_argument("--connections", type=int, default=128, help="keep-alive connections (in all)")
    parser.add_argument("--procs", type=int, default=CLIENT_PROCS, help="client processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--click-param", default="ct_click")
    parser.add_argument("--ids-file", type=Path, default=None, help="write the click id of every 302 here")
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_out:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(_worker(args))
        return 0
    figures = run_openloop(
        args.port,
        rate=args.rate,
        duration_s=args.duration,
        links=args.links,
        connections=args.connections,
        seed=args.seed,
        click_param=args.click_param,
        ids_file=args.ids_file,
        procs=args.procs,
    )
    print(stall_row(figures["stalls"]), file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
