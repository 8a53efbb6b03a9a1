"""A private redis-server for one benchmark: its own port, directory and AOF, so click counts are exact and
the shared Redis is never touched. Durability as in production: `appendonly yes`, `appendfsync everysec`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from benchmarks import procs


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@contextmanager
def private_redis(work: Path, *, appendfsync: str = "everysec") -> Iterator[str]:
    """Yields the URL of a fresh redis-server on a free loopback port; stopped (and killed) on exit."""
    binary = procs.binary("redis-server", "redis-server")
    work.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    cmd = [binary, "--bind", procs.LOOPBACK, "--port", str(port), "--dir", str(work), "--save", "",
           "--appendonly", "yes", "--appendfsync", appendfsync, "--daemonize", "no",
           "--logfile", str(work / "redis.log")]  # fmt: skip
    proc = procs.start(cmd, log_path=work / "stdout.log")
    client = redis.Redis(host=procs.LOOPBACK, port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"private redis did not start; see {work / 'redis.log'}") from None
                time.sleep(procs.POLL_INTERVAL_S)
        yield f"redis://{procs.LOOPBACK}:{port}/0"
    finally:
        client.close()
        procs.stop(proc)


def compact_aof(client: redis.Redis, timeout_s: float = 300) -> None:
    """Rewrite the AOF after bulk seeding and wait for it, so no automatic rewrite (a fork and a big write)
    lands in the middle of a measurement."""
    deadline = time.monotonic() + timeout_s
    _wait_rewrite(client, deadline)  # an automatic rewrite may have started during the seeding
    client.bgrewriteaof()
    _wait_rewrite(client, deadline)


def _wait_rewrite(client: redis.Redis, deadline: float) -> None:
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        time.sleep(0.1)
    raise RuntimeError("AOF rewrite did not finish")
