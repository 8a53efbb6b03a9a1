"""The click recorder: group commit into a Redis stream, with a local spool when Redis cannot take them.

`record(click)` returns once the click is durable: in Redis (acknowledged by the server, persisted per its
AOF policy) or, while Redis is unreachable, erroring or out of memory, fsynced in the local spool. Clicks
that arrive while a write is in flight wait together and go in the next write, so many redirects share
one Redis round trip and none waits longer than the write that carries its click.

Exactly once into the stream: each write is a batch numbered by this recorder (`seq`, strictly
increasing) and applied by a Lua script that appends it only if the recorder's last applied number is
lower. Once a write fails, the recorder stays on the spool until it has replayed the whole spool in order;
so numbers reach Redis in order, and a batch that timed out but still reached Redis, or a spool replayed
twice after a crash, is recognised and skipped. If even the spool cannot be written the viewer is still
redirected: the loss is counted (`clicks_lost`) and logged, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from core.keys import MAX_CLICK_SHARDS, Keys
from core.redisclient import eval_replicated
from redirector import spool
from redirector.click import SCHEMA_VERSION, Click, decode_batch, encode_batch
from redirector.futures import SharedFuture
from redirector.stats import RecorderStats
from redirector.writeline import WriteLine

log = logging.getLogger("clicktrail.recorder")

# KEYS: stream, sequence hash. ARGV: recorder id, seq, payload, schema version.
APPEND_SCRIPT = """
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last and tonumber(ARGV[2]) <= tonumber(last) then
  -- Rewritten unchanged: a WAIT after this call then also covers the batch's first write (replicas
  -- apply the stream in order), which may have been on another connection.
  redis.call('HSET', KEYS[2], ARGV[1], last)
  return 0
end
redis.call('XADD', KEYS[1], '*', 'v', ARGV[4], 'r', ARGV[1], 's', ARGV[2], 'c', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# Records read from a spool per step of a replay: bounds memory and keeps the event loop responsive.
REPLAY_CHUNK_RECORDS = 256


def batch_seq(batch: int, shards: int) -> int:
    """The sequence number of a recorder's `batch`-th batch (from 1) and the shard it goes to (round-robin):
    `batch` itself on a single node; `batch * MAX_CLICK_SHARDS + shard` on a cluster, so that the shard can
    be read back from a spooled batch (`shard_of`) and numbers rise within every shard."""
    if shards == 1:
        return batch
    return batch * MAX_CLICK_SHARDS + batch % shards


def shard_of(seq: int, shards: int) -> int:
    """The click shard a batch numbered by `batch_seq` belongs to (0 on a single node)."""
    return seq % MAX_CLICK_SHARDS % shards


def new_recorder_id() -> str:
    host = socket.gethostname().replace(".", "-")[:32]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class Recorder:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        spool_dir: Path,
        stats: RecorderStats,
        *,
        max_batch: int = 2_000,
        retry_interval_ms: int = 1_000,
        recorder_id: str | None = None,
        min_replicas_acked: int = 0,
        wait_timeout_ms: int = 100,
    ) -> None:
        """`redis` must be a client of the recorder's own with a short socket timeout and no retries:
        a slow write is given up and spooled rather than retried while a viewer waits.

        On a cluster (`keys.click_shards` > 1) batches go round-robin to the click stream's shards; a
        batch's shard is in its sequence number (seq = n * MAX_CLICK_SHARDS + shard), so the spool and its
        replay need no format of their own. With `min_replicas_acked`, a batch counts as written only once
        that many replicas hold it (WAIT, `wait_timeout_ms`); otherwise it is spooled like a failed
        write and replayed (idempotently, and waited for again) later."""
        self.recorder_id = recorder_id or new_recorder_id()
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(APPEND_SCRIPT)
        # The append on a connection of its own, a fraction of redis-py's cost per call (writeline.py);
        # None on a cluster, TLS or a Unix socket.
        self._line = WriteLine.of(redis)
        self._spool_dir = spool_dir
        self._spool = spool.SpoolWriter(spool_dir, self.recorder_id)
        self._stats = stats
        self._max_batch = max_batch
        self._retry_interval_s = retry_interval_ms / 1000
        self._batches = itertools.count(1)
        self._shards = keys.click_shards
        self._min_replicas = min_replicas_acked
        self._wait_timeout_ms = wait_timeout_ms
        self._live = True
        self._spooling = False
        self._replayed_to = 0
        self._open: list[Click] = []
        self._open_done: SharedFuture | None = None
        self._open_calls: list[Callable[[], None]] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task] = []

    @property
    def live(self) -> bool:
        """True while clicks go straight to Redis; False while they go to the spool."""
        return self._live

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="recorder-flush"),
            asyncio.create_task(self._maintain_loop(), name="recorder-maintain"),
        ]

    @property
    def closing(self) -> bool:
        return self._closing

    async def record(self, click: Click) -> None:
        """Returns once `click` is durable (or counted lost: a failed write is spooled, never raised)."""
        if self._closing:
            raise RuntimeError("recorder is closed")
        self._open.append(click)
        done = self._open_done
        if done is None:
            done = self._open_done = SharedFuture()
        self._wakeup.set()
        await done

    def submit(self, click: Click, durable: Callable[[], None]) -> None:
        """`record` without a coroutine: `durable()` is called, from the commit, once the click is durable
        (or counted lost). The protocol's shortcut (protocol.py) answers its 302 from there."""
        if self._closing:
            raise RuntimeError("recorder is closed")
        self._open.append(click)
        self._open_calls.append(durable)
        self._wakeup.set()

    async def close(self) -> None:
        """Flush what is buffered, stop the background work, release the spool (replayed by the next
        worker if anything is left in it)."""
        self._closing = True
        self._wakeup.set()
        flush, maintain = self._tasks or (None, None)
        if flush is not None:
            await flush
        if maintain is not None:
            maintain.cancel()
            await asyncio.gather(maintain, return_exceptions=True)
        if self._live and self._spool.size() == 0:
            self._spool.remove()
            # The sequence field is what makes a late duplicate harmless. Without a failed write in
            # this recorder's life no late write can exist, so it goes; otherwise it stays (a few bytes).
            if not self._stats.redis_failures:
                with contextlib.suppress(RedisError):
                    for shard in range(self._shards):
                        await self._redis.hdel(self._keys.click_seq(shard), self.recorder_id)
        if self._line is not None:
            self._line.close()
        self._spool.close()

    # --- group commit -------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._open:
                clicks, done, calls = self._open, self._open_done, self._open_calls
                self._open, self._open_done, self._open_calls = [], None, []
                try:
                    for start in range(0, len(clicks), self._max_batch):
                        await self._commit(clicks[start : start + self._max_batch])
                except Exception:  # a bug here must cost clicks (counted), never hang the viewers
                    self._stats.lost += len(clicks)
                    log.exception("click batch could not be recorded")
                finally:
                    if done is not None:
                        done.set_result(None)
                    _call_each(calls)
            if self._closing:
                return

    async def _commit(self, clicks: list[Click]) -> None:
        seq = batch_seq(next(self._batches), self._shards)
        payload = encode_batch(clicks)
        stats = self._stats
        stats.observe_batch(len(clicks))
        if self._live:
            try:
                await self._apply(self.recorder_id, seq, payload)
                stats.committed += len(clicks)
                return
            except (RedisError, OSError) as exc:
                self._live = False
                stats.redis_failures[type(exc).__name__] += 1
                log.warning("redis write failed (%s: %s); spooling clicks", type(exc).__name__, exc)
        self._spooling = True
        try:
            await asyncio.to_thread(self._spool.append, seq, payload)
            stats.spooled += len(clicks)
        except OSError as exc:
            stats.lost += len(clicks)
            log.error("spool write failed (%s): %d clicks lost", exc, len(clicks))
        finally:
            self._spooling = False

    async def _apply(self, recorder_id: str, seq: int, payload: bytes) -> int:
        shard = shard_of(seq, self._shards)
        keys = [self._keys.click_stream(shard), self._keys.click_seq(shard)]
        args = [recorder_id, seq, payload, SCHEMA_VERSION]
        if self._min_replicas:
            return await eval_replicated(
                self._redis, APPEND_SCRIPT, keys, args, self._min_replicas, self._wait_timeout_ms
            )
        if self._line is not None:
            with contextlib.suppress(NoScriptError):  # then loaded by redis-py's call below
                return await self._line.evalsha(self._script.sha, keys, args)
        return await self._script(keys=keys, args=args)

    # --- replay ---------------------------------------------------------------
    async def _maintain_loop(self) -> None:
        """Replay our own spool once Redis answers again, and the spools that dead workers left."""
        await self._replay_orphans()
        while True:
            await asyncio.sleep(self._retry_interval_s)
            try:
                if not self._live:
                    await self._redis.ping()
                    await self._replay_own()
                await self._replay_orphans()
            except (RedisError, OSError) as exc:
                log.debug("replay postponed: %s", exc)

    async def _replay_own(self) -> None:
        path = self._spool.path
        while True:
            records = await asyncio.to_thread(_read_chunk, path, self._replayed_to)
            for end, seq, payload in records:
                if await self._apply(self.recorder_id, seq, payload):
                    self._stats.replayed += len(decode_batch(payload))
                self._replayed_to = end
            if records:
                continue
            # Caught up. Checked and switched with no await in between, so no batch can be appended to
            # the spool after the check and before the switch.
            if not self._spooling and self._replayed_to >= self._spool.size():
                self._spool.remove()
                self._replayed_to = 0
                self._live = True
                log.warning("redis is back; spool replayed, recording live again")
                return
            await asyncio.sleep(0.001)  # an append is being fsynced: let it finish, then read it

    async def _replay_orphans(self) -> None:
        for recorder_id, path, fd in spool.orphans(self._spool_dir, own=self._spool.path):
            try:
                offset = 0
                while records := await asyncio.to_thread(_read_chunk, path, offset):
                    for end, seq, payload in records:
                        if await self._apply(recorder_id, seq, payload):
                            self._stats.replayed += len(decode_batch(payload))
                        offset = end
                path.unlink(missing_ok=True)
                log.warning("replayed the spool of dead recorder %s", recorder_id)
            finally:
                os.close(fd)


def _call_each(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        try:
            call()
        except Exception:  # one failed answer must not keep the rest of the batch from theirs
            log.exception("answering a recorded click failed")


def _read_chunk(path: Path, offset: int) -> list[tuple[int, int, bytes]]:
    if not path.exists():
        return []
    return list(itertools.islice(spool.read_records(path, offset), REPLAY_CHUNK_RECORDS))


async def count_clicks(redis: Redis, keys: Keys, page: int = 1_000) -> tuple[int, list[str]]:
    """(number of clicks, their ids) in the stream (every shard): for tests and benchmarks that check
    exact counts."""
    ids: list[str] = []
    for stream in keys.click_streams:
        start = "-"
        while True:
            entries = await redis.xrange(stream, min=start, max="+", count=page)
            for _, fields in entries:
                ids.extend(click.click_id for click in decode_batch(fields[b"c"]))
            if len(entries) < page:
                break
            last = entries[-1][0].decode()
            ms, seq = last.split("-")
            start = f"{ms}-{int(seq) + 1}"
    return len(ids), ids
