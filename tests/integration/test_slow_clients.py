"""The request-head deadline and size limit (redirector/protocol.py): a tiny ASGI app behind uvicorn with the
protocol, on a free loopback port, and raw sockets that send their heads slowly; then the real `clicktrail
serve` with the setting from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time

import pytest
import uvicorn

from redirector.protocol import MAX_HEAD_BYTES, HeaderTimeoutProtocol
from tests.conftest import free_port
from tests.integration.servehelp import ServeProcess

DEADLINE_S = 0.3
SLACK_S = 0.4  # timer and scheduling jitter on a busy 2-core machine


async def ok_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def server(deadline_s: float = DEADLINE_S):
    port = free_port()
    config = uvicorn.Config(
        ok_app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="error",
        http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=deadline_s),
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        await task


async def read_all(reader: asyncio.StreamReader, timeout_s: float = 5) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout_s)


async def dribble(writer: asyncio.StreamWriter, data: bytes, gap_s: float) -> None:
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(gap_s)


def in_loop(test):
    """Run an async test body in its own event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


REQUEST = b"GET /abc HTTP/1.1\r\nhost: t\r\nuser-agent: slow\r\n\r\n"


@in_loop
async def test_slow_head_is_answered_408_and_closed_at_the_deadline() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        sender = asyncio.create_task(dribble(writer, REQUEST, 0.05))  # ~2.5 s for the whole head
        reply = await read_all(reader)
        elapsed = time.monotonic() - started
        sender.cancel()
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert DEADLINE_S - 0.05 <= elapsed <= DEADLINE_S + SLACK_S, elapsed


@in_loop
async def test_idle_new_connection_is_closed_at_the_deadline() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        reply = await read_all(reader)
        elapsed = time.monotonic() - started
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert elapsed <= DEADLINE_S + SLACK_S


@in_loop
async def test_a_head_completed_in_time_is_served_even_if_sent_slowly() -> None:
    async with server(deadline_s=2.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await dribble(writer, REQUEST, 0.005)
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        writer.close()
    assert status.startswith(b"HTTP/1.1 200 ")


@in_loop
async def test_keep_alive_deadline_starts_at_the_next_request() -> None:
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        await reader.readexactly(2)
        # Idle for longer than the head deadline (but within uvicorn's keep-alive): not a slow head.
        await asyncio.sleep(DEADLINE_S * 2)
        writer.write(REQUEST)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 200 ")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        await reader.readexactly(2)
        # A second request whose head stalls is cut at the deadline counted from its first byte.
        writer.write(REQUEST[:10])
        started = time.monotonic()
        reply = await read_all(reader)
        elapsed = time.monotonic() - started
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert elapsed <= DEADLINE_S + SLACK_S


@in_loop
async def test_oversized_head_is_refused_431() -> None:
    async with server(deadline_s=5.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /abc HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        reply = await read_all(reader)
        writer.close()
    assert reply.startswith(b"HTTP/1.1 431 ")


@in_loop
async def test_oversized_head_arriving_at_once_is_refused_431_before_the_app() -> None:
    async with server(deadline_s=5.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /abc HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        reply = await read_all(reader)
        writer.close()
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]
    assert b"200 OK" not in reply


@pytest.mark.redis
def test_serve_closes_slow_heads_after_the_configured_deadline(settings, redis_client, monkeypatch) -> None:
    monkeypatch.setenv("CLICKTRAIL_HEADER_TIMEOUT_MS", "300")
    serve = ServeProcess(settings)
    try:
        with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as sock:
            sock.sendall(b"GET /abc")
            started = time.monotonic()
            reply = sock.recv(4096)
            elapsed = time.monotonic() - started
            assert sock.recv(4096) == b""  # closed
    finally:
        serve.stop()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert elapsed <= 0.3 + SLACK_S
