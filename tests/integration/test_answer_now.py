"""The protocol's shortcut for cached redirects (redirector/protocol.py `answer_now`), on a real uvicorn
server and real sockets: what it answers must be what the ASGI path would (status line, headers, keep-alive,
`connection: close`), in order behind pipelined requests, never after the client has gone, and a graceful
shutdown must wait for it. The app here is a stand-in whose `answer_now` takes codes starting with "q"
and releases each answer when the test says so (as the recorder's group commit does); every other request
takes the ASGI path and gets a 404, so which path answered is visible in the status."""

from __future__ import annotations

import asyncio
import contextlib
import functools

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from core.keys import Keys
from redirector.protocol import HeaderTimeoutProtocol
from redirector.recorder import count_clicks
from tests.conftest import free_port
from tests.integration.servehelp import ServeProcess

LOCATION = b"https://shop.example.com/p?ct_click=abc"


class ShortcutApp:
    def __init__(self) -> None:
        self.taken: list[tuple[str, str, bytes]] = []
        self.held: list = []  # the replies not released yet
        self.hold = False

    def answer_now(self, method, path, query, headers, client, reply) -> bool:
        if not path.startswith("/q"):
            return False
        self.taken.append((method, path, query))
        loop = asyncio.get_running_loop()
        if self.hold:
            self.held.append(reply)
        else:
            loop.call_soon(reply, LOCATION)  # like a commit's callback: never inside data_received
        return True

    def release(self) -> None:
        held, self.held = self.held, []
        for reply in held:
            reply(LOCATION)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def server(app: ShortcutApp):
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="error",
        proxy_headers=False,  # as `clicktrail serve`: uvicorn wraps the app otherwise, and no shortcut runs
        http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=5),
        timeout_graceful_shutdown=5,
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield port, srv, task
    finally:
        srv.should_exit = True
        await task


async def held(app: ShortcutApp, timeout_s: float = 5) -> None:
    async def wait() -> None:
        while not app.held:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout_s)


def in_loop(test):
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head[:-4].split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: t\r\nuser-agent: test\r\n{extra}\r\n".encode()


@in_loop
async def test_a_shortcut_answer_is_a_302_with_the_asgi_paths_headers_and_keeps_the_connection() -> None:
    app = ShortcutApp()
    async with server(app) as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for method in ("GET", "HEAD", "GET"):
            writer.write(get("/qcode?utm=1", method))
            status, headers = await read_response(reader)
            assert status == b"HTTP/1.1 302 Found"
            assert headers[b"location"] == LOCATION
            assert headers[b"cache-control"] == b"private, no-store"
            assert headers[b"content-length"] == b"0"
            assert b"date" in headers  # uvicorn's default header, as on the ASGI path
            assert b"connection" not in headers
        writer.write(get("/other"))
        assert (await read_response(reader))[0] == b"HTTP/1.1 404 Not Found"
        writer.close()
    assert app.taken == [
        ("GET", "/qcode", b"utm=1"),
        ("HEAD", "/qcode", b"utm=1"),
        ("GET", "/qcode", b"utm=1"),
    ]


@pytest.mark.parametrize(
    "request_bytes",
    [
        get("/qcode", "POST", "content-length: 0\r\n"),
        get("/qcode", "PUT", "content-length: 0\r\n"),
        get("/q%63ode"),  # percent-encoded: uvicorn decodes it, the ASGI path decides
        b"GET /qcode HTTP/1.0\r\nhost: t\r\n\r\n",
    ],
    ids=["post", "put", "percent-path", "http-1.0"],
)
def test_what_the_shortcut_does_not_take_goes_the_asgi_path(request_bytes: bytes) -> None:
    async def scenario() -> None:
        app = ShortcutApp()
        async with server(app) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes)
            status, _ = await read_response(reader)
            writer.close()
        assert status.endswith(b"404 Not Found")
        assert app.taken == []

    asyncio.run(scenario())


class FailingShortcutApp(ShortcutApp):
    def answer_now(self, method, path, query, headers, client, reply) -> bool:
        raise RuntimeError("a bug in the shortcut")


@in_loop
async def test_a_shortcut_that_fails_leaves_the_request_to_the_asgi_path() -> None:
    """Inside the parser's callback an exception would become uvicorn's 400 and a closed connection."""
    async with server(FailingShortcutApp()) as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # the connection stays usable
            writer.write(get("/qcode"))
            assert (await read_response(reader))[0] == b"HTTP/1.1 404 Not Found"  # the ASGI app's answer
        writer.close()


@in_loop
async def test_connection_close_is_answered_with_close_and_the_socket_closed() -> None:
    app = ShortcutApp()
    async with server(app) as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/qcode", extra="connection: close\r\n"))
        status, headers = await read_response(reader)
        assert status == b"HTTP/1.1 302 Found"
        assert headers[b"connection"] == b"close"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()


@in_loop
async def test_pipelined_requests_are_answered_in_order() -> None:
    app = ShortcutApp()
    app.hold = True
    async with server(app) as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A shortcut answer still pending, then an ASGI request and another shortcut one behind it.
        writer.write(get("/qone") + get("/other") + get("/qtwo"))
        await asyncio.sleep(0.2)
        assert len(app.taken) == 1  # the others wait behind the pending answer
        assert not reader.at_eof() and reader._buffer == b""
        app.release()
        assert (await read_response(reader))[0] == b"HTTP/1.1 302 Found"
        assert (await read_response(reader))[0] == b"HTTP/1.1 404 Not Found"
        # The third was queued by uvicorn's pipeline (the ASGI path), so it is a 404 too.
        assert (await read_response(reader))[0] == b"HTTP/1.1 404 Not Found"
        writer.close()


@in_loop
async def test_a_client_gone_before_its_answer_gets_nothing_written_and_nothing_breaks() -> None:
    app = ShortcutApp()
    app.hold = True
    async with server(app) as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/qcode"))
        await held(app)
        writer.close()
        await asyncio.sleep(0.2)  # the server sees the connection lost
        app.release()  # must not write to the closed transport or raise
        app.hold = False
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/qcode"))
        assert (await read_response(reader))[0] == b"HTTP/1.1 302 Found"
        writer.close()


@in_loop
async def test_graceful_shutdown_waits_for_a_pending_answer_then_closes() -> None:
    app = ShortcutApp()
    app.hold = True
    async with server(app) as (port, srv, task):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/qcode"))
        await held(app)
        srv.should_exit = True
        await asyncio.sleep(0.3)
        assert not task.done()  # the server waits for the answer in progress
        app.release()
        status, headers = await read_response(reader)
        assert status == b"HTTP/1.1 302 Found"
        assert headers[b"connection"] == b"close"  # shutdown ended keep-alive
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.wait_for(task, 5)
        writer.close()


def _raw_get(port: int, path: str, method: str = "GET") -> tuple[bytes, dict[bytes, bytes]]:
    async def once() -> tuple[bytes, dict[bytes, bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(path, method))
        answer = await read_response(reader)
        writer.close()
        return answer

    return asyncio.run(once())


def _metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


@pytest.mark.redis
def test_clicktrail_answers_a_cached_link_as_it_answered_the_first_request(settings) -> None:
    """The real app: the first request misses the cache (ASGI path), the next ones hit it (shortcut).
    Same status and headers, every click stored once under the id its 302 carries, all counted."""
    server = ServeProcess(settings)
    try:
        created = httpx.post(
            server.url + "/api/links",
            json={"url": "https://shop.example.com/p?a=1", "creator_id": "c", "code": "same-answer"},
            headers={"authorization": f"Bearer {settings.admin_token}"},
        )
        assert created.status_code == 201
        answers = [
            _raw_get(server.port, "/same-answer?utm=x&ct_click=forged", m) for m in ("GET", "GET", "HEAD")
        ]
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    first_status, first = answers[0]
    click_ids = []
    for status, headers in answers:
        assert status == first_status == b"HTTP/1.1 302 Found"
        assert sorted(headers) == sorted(first)
        assert {k: v for k, v in headers.items() if k not in (b"location", b"date")} == {
            k: v for k, v in first.items() if k not in (b"location", b"date")
        }
        location, click_id = headers[b"location"].decode().rsplit("=", 1)
        assert location == "https://shop.example.com/p?a=1&utm=x&ct_click"  # the forged id is dropped
        click_ids.append(click_id)
    assert len(set(click_ids)) == 3
    assert _metric(metrics, 'clicktrail_link_cache_total{result="hit"}') == 2
    assert _metric(metrics, 'clicktrail_link_cache_total{result="miss"}') == 1
    assert _metric(metrics, 'clicktrail_redirects_total{method="GET",status="302"}') == 2
    assert _metric(metrics, 'clicktrail_redirects_total{method="HEAD",status="302"}') == 1
    assert _metric(metrics, "clicktrail_redirects_shortcut_total") == 2  # the two served from the cache

    async def stored() -> list[str]:
        client = Redis.from_url(settings.redis_url)
        try:
            return (await count_clicks(client, Keys.of(settings)))[1]
        finally:
            await client.aclose()

    assert sorted(asyncio.run(stored())) == sorted(click_ids)
