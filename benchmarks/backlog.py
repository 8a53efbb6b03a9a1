"""A stream backlog for the redirect benchmark: the click stream pre-filled with N unconsumed clicks (as
if the ingester were down), so redirect cost can be compared with an empty stream. The recorder only
appends (XADD, no trimming, no reads), so the cost should not depend on the backlog: this measures it.

The backlog clicks are made by the ingest benchmark's generator and written in entries of 2,000, as the
recorder writes them under load. They are removed (XTRIM MINID) before the click check, so the check
sees exactly the clicks of the run."""

from __future__ import annotations

import secrets
import time

import redis

from benchmarks.ingest import PER_ENTRY, fill, make_clicks
from core.clickid import ClickIds
from core.keys import Keys

# Clicks generated and written per round, so a million never sit in this process's memory at once.
FILL_CHUNK = 200_000


def fill_backlog(redis_url: str, prefix: str, clicks: int) -> dict:
    """Append `clicks` synthetic clicks to the click stream; returns the last entry id and Redis memory."""
    stream = Keys(prefix).clicks
    ids = ClickIds(secrets.token_bytes(16))
    client = redis.Redis.from_url(redis_url)
    started = time.perf_counter()
    try:
        before = client.info("memory")["used_memory"]
        start_ms = int(time.time() * 1000) - 3_600_000
        for offset in range(0, clicks, FILL_CHUNK):
            count = min(FILL_CHUNK, clicks - offset)
            fill(client, stream, make_clicks(ids, count, start_ms + offset, 0.001), PER_ENTRY)
        last_id = client.xrevrange(stream, count=1)[0][0].decode()
        return {
            "clicks": clicks,
            "entries": client.xlen(stream),
            "last_entry_id": last_id,
            "fill_s": round(time.perf_counter() - started, 2),
            "redis_used_memory_delta": client.info("memory")["used_memory"] - before,
        }
    finally:
        client.close()


def trim_backlog(redis_url: str, prefix: str, backlog: dict) -> int:
    """Remove the backlog entries (every id up to and including its last one); returns entries removed."""
    ms, seq = backlog["last_entry_id"].split("-")
    client = redis.Redis.from_url(redis_url)
    try:
        return client.xtrim(Keys(prefix).clicks, minid=f"{ms}-{int(seq) + 1}")
    finally:
        client.close()
