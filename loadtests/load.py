"""A small asyncio HTTP/1.1 load client on raw streams (cheaper per request than an HTTP library, which
matters when the client shares two cores with the system under test).

Each connection sends `GET /{code}` on keep-alive, paced so that all connections together offer
`rate_per_s` (or as fast as answers come when the rate is None), and records per request: when it was
sent, its latency, its status, and for a 302 the click id taken from the Location (`ct_click=`). A
request that errors or passes `timeout_s` is recorded too (status 0 and the reason) and its connection
is replaced. Bounded by `duration_s`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

CLICK_PARAM = b"ct_click="
USER_AGENT = b"Mozilla/5.0 (X11; Linux x86_64) clicktrail-loadtest/1.0"
# Pause before reconnecting after a refused or reset connection (a worker or the server restarting).
RECONNECT_PAUSE_S = 0.05
MAX_HEAD_BYTES = 65_536


@dataclass
class LoadStats:
    """What a load run saw. `samples` are (sent at, seconds since the run began; latency s; status)."""

    started_at: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    click_ids: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    bad_locations: int = 0  # 302 without a click id, or with bytes a header must not carry
    measure_from_s: float = 0.0  # samples before this (a warm-up) are not timed

    def latencies(self, since_s: float = 0.0, until_s: float = float("inf"), ok_only: bool = True) -> list:
        since_s = max(since_s, self.measure_from_s)
        return sorted(
            lat for at, lat, status in self.samples if since_s <= at < until_s and (status or not ok_only)
        )

    def summary(self, since_s: float = 0.0, until_s: float = float("inf")) -> dict:
        lats = self.latencies(since_s, until_s, ok_only=False)
        first = max(since_s, self.measure_from_s)
        last = min(until_s, max((at + lat for at, lat, _ in self.samples), default=first))
        return {
            "requests": len(lats),
            "per_s": round(len(lats) / (last - first), 1) if last > first else 0.0,
            "p50_ms": _ms(percentile(lats, 0.50)),
            "p99_ms": _ms(percentile(lats, 0.99)),
            "max_ms": _ms(lats[-1] if lats else 0.0),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def click_id_of(location: bytes) -> str | None:
    at = location.rfind(CLICK_PARAM)
    if at < 0:
        return None
    value = location[at + len(CLICK_PARAM) :]
    for stop in (b"&", b"#"):
        value = value.split(stop, 1)[0]
    return value.decode("ascii", "replace") or None


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> tuple[int, dict, bytes]:
    """(status, headers lower-cased, body) of one response; raises on a closed or garbled connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    body = b"" if head_only or not length else await reader.readexactly(length)
    return status, headers, body


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES
            )
        assert self.reader is not None
        return self.reader, self.writer

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _request(code: str) -> bytes:
    return b"GET /%s HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: %s\r\n\r\n" % (code.encode(), USER_AGENT)


async def _one(conn: _Connection, request: bytes, stats: LoadStats, timeout_s: float) -> None:
    sent = time.monotonic()
    status, reason = 0, ""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await conn.ensure()
            writer.write(request)
            status, headers, _ = await read_response(reader)
    except TimeoutError:
        reason = "timeout"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        reason = type(exc).__name__
    latency = time.monotonic() - sent
    stats.samples.append((sent - stats.started_at, latency, status))
    if not status:
        stats.errors[reason] += 1
        conn.drop()
        await asyncio.sleep(RECONNECT_PAUSE_S)
        return
    stats.statuses[status] += 1
    if status == 302:
        location = headers.get(b"location", b"")
        click_id = click_id_of(location)
        if click_id is None or any(b in location for b in (b"\r", b"\n", b" ")):
            stats.bad_locations += 1
        if click_id is not None:
            stats.click_ids.append(click_id)
    if headers.get(b"connection", b"").lower() == b"close":
        conn.drop()


async def drive(
    host: str,
    port: int,
    codes: list[str],
    *,
    duration_s: float,
    rate_per_s: float | None,
    connections: int,
    stats: LoadStats,
    timeout_s: float = 30.0,
) -> LoadStats:
    """Offer load for `duration_s` seconds (requests already sent are awaited, up to `timeout_s`)."""
    requests = [_request(code) for code in codes]
    end = time.monotonic() + duration_s
    interval = connections / rate_per_s if rate_per_s else 0.0

    async def worker(index: int) -> None:
        conn = _Connection(host, port)
        cycle = itertools.islice(itertools.cycle(requests), index % len(requests), None)
        next_at = time.monotonic() + (interval * index / connections if interval else 0.0)
        try:
            while True:
                now = time.monotonic()
                if now >= end:
                    return
                if next_at > now:
                    await asyncio.sleep(min(next_at - now, end - now))
                    continue
                await _one(conn, next(cycle), stats, timeout_s)
                # Behind schedule (slow answers): go on from now rather than send a catch-up burst.
                next_at = max(next_at + interval, time.monotonic() - interval)
        finally:
            conn.drop()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return stats


async def request_once(host: str, port: int, code: str, stats: LoadStats, timeout_s: float = 30.0) -> None:
    """One `GET /{code}` on a new connection, recorded in `stats` like the load's requests."""
    conn = _Connection(host, port)
    try:
        await _one(conn, _request(code), stats, timeout_s)
    finally:
        conn.drop()
