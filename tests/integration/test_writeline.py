"""The recorder's own connection (redirector/writeline.py) against a real Redis: the same answers and the
same exceptions as redis-py, credentials and database honoured, a deadline that fails the call and lets
the next one connect again, and the recorder still storing every click when Redis lost its scripts."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoScriptError, OutOfMemoryError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.keys import Keys
from redirector.recorder import APPEND_SCRIPT, Recorder
from redirector.stats import RecorderStats
from redirector.writeline import WriteLine
from tests.integration.test_recorder_faults import click, recorder_client, stream_order

pytestmark = pytest.mark.redis

ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"


def test_only_a_plain_client_of_one_redis_gets_a_line() -> None:
    assert WriteLine.of(redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")) is not None
    for client in (
        redis.asyncio.Redis.from_url("rediss://127.0.0.1:6379/0"),
        redis.asyncio.Redis.from_url("unix:///tmp/redis.sock"),
        RedisCluster(host="127.0.0.1", port=7001),
        "not a client",
    ):
        assert WriteLine.of(client) is None


def test_answers_and_errors_are_redis_pys(private_redis) -> None:
    async def scenario():
        client = redis.asyncio.Redis(port=private_redis.port)
        sha = await client.script_load(ECHO)
        line = WriteLine.of(client)
        assert await line.evalsha(sha, ["k"], [b"\x00bytes", 41]) == [b"k", b"\x00bytes", 42]
        # Many calls in flight on the one connection get their own replies.
        replies = await asyncio.gather(*(line.evalsha(sha, [f"k{n}"], ["a", n]) for n in range(200)))
        assert replies == [[f"k{n}".encode(), b"a", n + 1] for n in range(200)]
        with pytest.raises(NoScriptError):
            await line.evalsha("0" * 40, ["k"], ["a", 1])
        with pytest.raises(ResponseError):
            await line._call((b"NOSUCHCOMMAND",))
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")
        with pytest.raises(OutOfMemoryError):
            await line.evalsha(await client.script_load("return redis.call('SET', KEYS[1], 'x')"), ["k"], [])
        await client.config_set("maxmemory", "0")
        assert await line.evalsha(sha, ["k"], ["b", 1]) == [b"k", b"b", 2]  # the line is still usable
        line.close()
        await client.aclose()

    asyncio.run(scenario())


def test_password_and_database_are_used(private_redis) -> None:
    async def scenario():
        admin = redis.asyncio.Redis(port=private_redis.port)
        await admin.config_set("requirepass", "s3cret")
        admin = redis.asyncio.Redis(port=private_redis.port, password="s3cret")
        sha = await admin.script_load("return redis.call('SET', KEYS[1], ARGV[1])")
        line = WriteLine.of(redis.asyncio.Redis.from_url(f"redis://:s3cret@127.0.0.1:{private_redis.port}/3"))
        assert await line.evalsha(sha, ["where"], ["db3"]) == b"OK"
        db3 = redis.asyncio.Redis(port=private_redis.port, password="s3cret", db=3)
        assert await db3.get("where") == b"db3"
        assert await admin.get("where") is None
        wrong = WriteLine.of(redis.asyncio.Redis.from_url(f"redis://:nope@127.0.0.1:{private_redis.port}/0"))
        with pytest.raises(AuthenticationError):
            await wrong.evalsha(sha, ["where"], ["x"])
        line.close()

    asyncio.run(scenario())


def test_a_deadline_fails_the_call_and_the_next_call_connects_again(private_redis) -> None:
    async def scenario():
        client = redis.asyncio.Redis.from_url(private_redis.url, socket_timeout=0.25)
        sha = await client.script_load(ECHO)
        line = WriteLine.of(client)
        assert await line.evalsha(sha, ["k"], ["a", 1]) == [b"k", b"a", 2]
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await line.evalsha(sha, ["k"], ["a", 1])
            assert time.monotonic() - started < 2
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        assert await line.evalsha(sha, ["k"], ["a", 2]) == [b"k", b"a", 3]
        await client.client_kill_filter(_type="normal", skipme=True)  # the server drops the line
        await asyncio.sleep(0.1)
        assert await line.evalsha(sha, ["k"], ["a", 3]) == [b"k", b"a", 4]
        private_redis.kill()
        with pytest.raises(RedisConnectionError):
            await line.evalsha(sha, ["k"], ["a", 1])
        line.close()

    asyncio.run(scenario())


def test_the_recorder_stores_every_click_after_redis_lost_its_scripts(private_redis, tmp_path: Path) -> None:
    async def scenario():
        stats = RecorderStats()
        recorder = Recorder(recorder_client(private_redis.url), Keys("ct:fault:"), tmp_path / "spool", stats)
        await recorder.start()
        admin = redis.asyncio.Redis(port=private_redis.port)
        await admin.script_flush()  # a restarted Redis without its script cache
        await asyncio.gather(*(recorder.record(click(n)) for n in range(30)))
        await admin.script_flush()
        await asyncio.gather(*(recorder.record(click(n)) for n in range(30, 60)))
        await recorder.close()
        assert await stream_order(admin) == [f"id-{n:06d}" for n in range(60)]
        assert stats.lost == 0 and stats.spooled == 0 and not stats.redis_failures
        assert await admin.script_exists(hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest()) == [True]
        await admin.aclose()

    asyncio.run(scenario())


def test_a_line_closed_while_it_connects_keeps_no_connection(private_redis) -> None:
    async def scenario():
        client = redis.asyncio.Redis(port=private_redis.port)
        sha = await client.script_load(ECHO)
        before = {c["id"] for c in await client.client_list()}
        line = WriteLine.of(client)
        call = asyncio.ensure_future(line.evalsha(sha, ["k"], ["a", 1]))
        await asyncio.sleep(0)  # the call is connecting
        line.close()
        with pytest.raises(RedisConnectionError):
            await call
        assert line._line is None
        with pytest.raises(RedisConnectionError):
            await line.evalsha(sha, ["k"], ["a", 1])
        for _ in range(50):  # the server sees the aborted connection go on its next loop turn
            clients = [c for c in await client.client_list() if c["id"] not in before]
            if not clients:
                break
            await asyncio.sleep(0.02)
        assert clients == [], [(c["id"], c["cmd"], c["age"]) for c in clients]
        await client.aclose()

    asyncio.run(scenario())
