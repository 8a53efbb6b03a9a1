"""The recorder when Redis fails: clicks spool, replay in order, and land in the stream exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.keys import Keys
from redirector.click import Click, decode_batch, encode_batch
from redirector.recorder import Recorder, count_clicks
from redirector.spool import SpoolWriter
from redirector.stats import RecorderStats

pytestmark = pytest.mark.redis

KEYS = Keys("ct:fault:")


def click(n: int) -> Click:
    return Click(
        f"id-{n:06d}", 1_700_000_000_000 + n, "code1", "cr", "", "h.example", False, "ua", "", 1, "", ""
    )


def recorder_client(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0))


async def started_recorder(url: str, spool_dir: Path) -> tuple[Recorder, RecorderStats]:
    stats = RecorderStats()
    recorder = Recorder(recorder_client(url), KEYS, spool_dir, stats, retry_interval_ms=50)
    await recorder.start()
    return recorder, stats


async def wait_until(predicate, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def stream_order(redis: Redis) -> list[str]:
    ids = []
    for _, fields in await redis.xrange(KEYS.clicks):
        ids.extend(c.click_id for c in decode_batch(fields[b"c"]))
    return ids


def test_redis_killed_mid_run_loses_nothing(private_redis, tmp_path: Path) -> None:
    async def scenario():
        recorder, stats = await started_recorder(private_redis.url, tmp_path / "spool")
        await asyncio.gather(*(recorder.record(click(n)) for n in range(200)))
        private_redis.kill()
        await asyncio.gather(*(recorder.record(click(n)) for n in range(200, 400)))
        assert not recorder.live and stats.spooled == 200
        private_redis.start()  # same port and data dir: the AOF brings the first 200 back
        await wait_until(lambda: recorder.live)
        await asyncio.gather(*(recorder.record(click(n)) for n in range(400, 450)))
        await recorder.close()
        checker = private_redis.client()
        ids = await stream_order(Redis(port=private_redis.port))
        assert ids == [f"id-{n:06d}" for n in range(450)]  # all, once, in order
        assert (stats.committed, stats.spooled, stats.replayed, stats.lost) == (250, 200, 200, 0)
        assert not list((tmp_path / "spool").glob("*.spool"))
        checker.close()

    asyncio.run(scenario())


def test_paused_redis_times_out_to_spool_and_the_late_write_is_not_doubled(private_redis, tmp_path) -> None:
    async def scenario():
        recorder, stats = await started_recorder(private_redis.url, tmp_path / "spool")
        await recorder.record(click(0))
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            # The first write reaches Redis's socket and times out: ambiguous. The rest never get sent.
            await asyncio.wait_for(asyncio.gather(*(recorder.record(click(n)) for n in range(1, 50))), 10)
            assert time.monotonic() - started < 10
            await asyncio.wait_for(asyncio.gather(*(recorder.record(click(n)) for n in range(50, 60))), 10)
            assert not recorder.live
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: recorder.live)
        await recorder.close()
        ids = await stream_order(Redis(port=private_redis.port))
        assert ids == [f"id-{n:06d}" for n in range(60)]
        assert stats.lost == 0

    asyncio.run(scenario())


def test_a_dead_workers_spool_is_replayed_once(private_redis, tmp_path) -> None:
    async def scenario():
        spool_dir = tmp_path / "spool"
        dead = SpoolWriter(spool_dir, "dead-worker")
        for seq in (1, 2, 3):
            dead.append(seq, encode_batch([click(seq * 10 + i) for i in range(3)]))
        dead.close()  # releases the lock, as the death of its process would
        # Simulate a crash half-way through an earlier replay: batch 1 already made it into Redis.
        redis = Redis(port=private_redis.port)
        await redis.hset(KEYS.recorder_seq, "dead-worker", 1)
        stats = RecorderStats()
        recorder = Recorder(recorder_client(private_redis.url), KEYS, spool_dir, stats, retry_interval_ms=50)
        await recorder.start()
        await wait_until(lambda: not (spool_dir / "dead-worker.spool").exists())
        await recorder.close()
        ids = await stream_order(redis)
        assert ids == [f"id-{n:06d}" for n in (20, 21, 22, 30, 31, 32)]
        assert stats.replayed == 6

    asyncio.run(scenario())


def test_torn_tail_record_is_ignored(tmp_path) -> None:
    from redirector.spool import read_records

    writer = SpoolWriter(tmp_path, "w")
    writer.append(1, b"first")
    writer.append(2, b"second")
    writer.close()
    path = tmp_path / "w.spool"
    path.write_bytes(path.read_bytes()[:-3])  # the process died mid-write of record 2
    assert [(seq, payload) for _, seq, payload in read_records(path)] == [(1, b"first")]


def test_when_nothing_can_record_the_viewer_still_gets_through_and_the_loss_is_counted(tmp_path) -> None:
    async def scenario():
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the spool directory should be")
        stats = RecorderStats()
        # Nothing listens on port 1: every write fails at once.
        recorder = Recorder(recorder_client("redis://127.0.0.1:1/0"), KEYS, blocker / "spool", stats)
        await recorder.start()
        await asyncio.wait_for(recorder.record(click(1)), 5)
        await recorder.close()
        assert (stats.committed, stats.spooled, stats.lost) == (0, 0, 1)
        assert sum(stats.redis_failures.values()) == 1

    asyncio.run(scenario())


def test_count_clicks_pages_through_the_stream(redis_client, settings) -> None:
    async def scenario():
        keys = Keys(settings.redis_prefix)
        redis = Redis.from_url(settings.redis_url)
        for batch in range(25):
            await redis.xadd(keys.clicks, {"c": encode_batch([click(batch * 2), click(batch * 2 + 1)])})
        count, ids = await count_clicks(redis, keys, page=7)
        assert count == 50 and len(set(ids)) == 50
        await redis.aclose()

    asyncio.run(scenario())


def test_redis_out_of_memory_spools_then_replays(private_redis, tmp_path) -> None:
    async def scenario():
        admin = Redis(port=private_redis.port)
        recorder, stats = await started_recorder(private_redis.url, tmp_path / "spool")
        await recorder.record(click(0))
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        await asyncio.gather(*(recorder.record(click(n)) for n in range(1, 20)))
        assert not recorder.live and stats.redis_failures["OutOfMemoryError"] >= 1
        await admin.config_set("maxmemory", "0")
        await wait_until(lambda: recorder.live)
        await recorder.close()
        assert await stream_order(admin) == [f"id-{n:06d}" for n in range(20)]
        await admin.aclose()

    asyncio.run(scenario())


def test_a_cancelled_request_does_not_cancel_the_others_in_its_batch(private_redis, tmp_path) -> None:
    async def scenario():
        recorder, stats = await started_recorder(private_redis.url, tmp_path / "spool")
        private_redis.proc.send_signal(signal.SIGSTOP)  # the write hangs until its 250 ms timeout
        try:
            tasks = [asyncio.create_task(recorder.record(click(n))) for n in range(3)]
            await asyncio.sleep(0.05)
            tasks[0].cancel()
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [None, None]
        assert stats.spooled == 3  # the cancelled request's click was recorded all the same
        await wait_until(lambda: recorder.live)
        await recorder.close()
        assert await stream_order(Redis(port=private_redis.port)) == [f"id-{n:06d}" for n in range(3)]

    asyncio.run(scenario())
