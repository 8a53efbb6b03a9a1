"""The recorder's cost per group commit, with its own connection for the append (redirector/writeline.py)
and with redis-py's script call instead, alternating, against a Redis on loopback:

    .venv/bin/python -m benchmarks.recorder [--redis-url redis://127.0.0.1:6379/0] [--commits 3000]

Each figure is `commits` waves of `record()` calls gathered together (1 click, then 16 per wave), so each
wave is one group commit; CPU is this process's, wall is per wave. Keys go under `ct:recbench:` and are
removed afterwards."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.keys import Keys
from redirector.click import Click
from redirector.recorder import Recorder
from redirector.stats import RecorderStats

ROUNDS = 3


def _click(n: int) -> Click:
    return Click(
        f"id-{n:06d}", 1_700_000_000_000 + n, "code1", "cr", "", "h.example", False, "ua", "", 1, "", ""
    )


async def _figure(url: str, own_line: bool, commits: int, per_commit: int) -> tuple[float, float]:
    client = Redis.from_url(url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    prefix = f"ct:recbench:{int(own_line)}:"
    with tempfile.TemporaryDirectory() as spool:
        recorder = Recorder(client, Keys(prefix), Path(spool), RecorderStats())
        if not own_line:
            recorder._line = None  # redis-py's script call, as before writeline.py
        await recorder.start()
        clicks = [_click(n) for n in range(per_commit)]
        await asyncio.gather(*(recorder.record(c) for c in clicks))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(commits):
            await asyncio.gather(*(recorder.record(c) for c in clicks))
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        await recorder.close()
    async for key in client.scan_iter(match=prefix + "*"):
        await client.delete(key)
    await client.aclose()
    return cpu_s / commits * 1e6, wall_s / commits * 1e6


async def main(url: str, commits: int) -> None:
    print("clicks/commit  append by       CPU µs/commit  wall µs/commit")
    for per_commit in (1, 16):
        for _ in range(ROUNDS):
            for own_line in (False, True):
                cpu_us, wall_us = await _figure(url, own_line, commits, per_commit)
                name = "own line" if own_line else "redis-py Script"
                print(f"{per_commit:13d}  {name:15s} {cpu_us:13.1f}  {wall_us:14.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--commits", type=int, default=3000)
    options = parser.parse_args()
    uvloop.run(main(options.redis_url, options.commits))
