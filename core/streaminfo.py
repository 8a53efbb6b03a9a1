"""What a Redis stream and its consumer group say about ingestion progress: the lag (entries and
seconds) that operators watch, the floor below which entries may be trimmed, and the ingest metrics."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import redis
import redis.asyncio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# How often the lag gauges are refreshed, by the ingester and by the server (three Redis calls each time).
LAG_INTERVAL_S = 1.0


class StreamMetrics:
    """Counters of one ingest process, labelled by stream name; made once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.entries = counter(
            "clicktrail_stream_entries_acked", "Stream entries stored and acked", ["stream"]
        )
        self.records = counter(
            "clicktrail_stream_records",
            "Records by outcome (inserted, already_stored)",
            ["stream", "outcome"],
        )
        self.dead = counter(
            "clicktrail_stream_dead_letters", "Entries dead-lettered, by reason", ["stream", "reason"]
        )
        self.claimed = counter(
            "clicktrail_stream_claimed_entries", "Entries taken over from idle consumers", ["stream"]
        )
        self.errors = counter(
            "clicktrail_stream_errors", "Failed steps (redis, clickhouse, lease)", ["stream", "kind"]
        )
        self.insert_seconds = Histogram(
            "clicktrail_stream_insert_seconds",
            "ClickHouse insert time per batch",
            ["stream"],
            registry=registry,
        )
        self.lag_entries = Gauge(
            "clicktrail_stream_lag_entries", "Entries not yet stored and acked", ["stream"], registry=registry
        )
        self.lag_seconds = Gauge(
            "clicktrail_stream_lag_seconds",
            "Age of the oldest entry not yet stored",
            ["stream"],
            registry=registry,
        )


def stream_lag(client: redis.Redis, stream: str, group: str) -> tuple[int, float]:
    """(entries not yet acknowledged, age in seconds of the oldest of them) for one group."""
    steps = _lag_steps(stream, group)
    try:
        name, args = next(steps)
        while True:
            name, args = steps.send(getattr(client, name)(*args))
    except StopIteration as done:
        return done.value


async def stream_lag_async(client: redis.asyncio.Redis, stream: str, group: str) -> tuple[int, float]:
    """`stream_lag` for an asyncio client (the HTTP server's /metrics)."""
    steps = _lag_steps(stream, group)
    try:
        name, args = next(steps)
        while True:
            name, args = steps.send(await getattr(client, name)(*args))
    except StopIteration as done:
        return done.value


def _lag_steps(stream: str, group: str) -> Generator[tuple[str, tuple], Any, tuple[int, float]]:
    """The lag computation, free of I/O: it yields the Redis commands it needs (method name, arguments)
    and is sent their replies, so the sync and the asyncio client share it."""
    groups = {_text(g["name"]): g for g in (yield "xinfo_groups", (stream,))}
    info = groups.get(group)
    if info is None:
        return (yield "xlen", (stream,)), 0.0
    last = _text(info["last-delivered-id"])
    oldest: list[int] = []
    if info["pending"]:
        oldest_pending = (yield "xpending", (stream, group))["min"]
        if oldest_pending is not None:  # acknowledged since XINFO a moment ago
            oldest.append(id_ms(_text(oldest_pending)))
    undelivered = yield "xrange", (stream, f"({last}", "+", 1)
    if undelivered:
        oldest.append(id_ms(_text(undelivered[0][0])))
    behind = info.get("lag")
    if behind is None:  # Redis cannot tell after some deletions; count (bounded by the stream length)
        behind = (yield "xlen", (stream,)) if undelivered else 0
    seconds = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
    return int(info["pending"]) + int(behind), seconds


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_ms(entry_id: str) -> int:
    """The millisecond time part of a stream entry id."""
    return int(entry_id.split("-", 1)[0])


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def trim_floor(client: redis.Redis, stream: str, keep_after_ms: int | None = None) -> str | None:
    """The lowest id still needed by any group: its oldest pending entry, or the first id after the last it
    delivered. Both only move up while we look (new pending entries lie above the last delivered id), so
    trimming below a floor read a moment ago is safe. `keep_after_ms` lowers the floor to keep entries
    of the recent past for readers outside the groups. None: nothing may be trimmed."""
    floor: tuple[int, int] | None = None
    for group in client.xinfo_groups(stream):
        ms, seq = _parse_id(_text(group["last-delivered-id"]))
        bound = (ms, seq + 1)
        oldest_pending = client.xpending(stream, group["name"])["min"] if group["pending"] else None
        if oldest_pending is not None:  # None: all acknowledged since XINFO a moment ago
            bound = min(bound, _parse_id(_text(oldest_pending)))
        floor = bound if floor is None else min(floor, bound)
    if floor is not None and keep_after_ms is not None:
        floor = min(floor, (keep_after_ms, 0))
    if floor is None or floor <= (0, 1):
        return None
    return f"{floor[0]}-{floor[1]}"
