"""Event receivers for delivery tests: a plain asyncio HTTP/1.1 server on 127.0.0.1 whose answer the
test sets (succeed, fail with a 500, hang, answer slowly, redirect, send a huge body) and changes at
will, recording every request it got. Also the fast settings and the in-process worker the tests use."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from attribution.delivery import Deliverer, DeliveryMetrics
from core.settings import Settings

HANG_S = 3600.0


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    status: int = 204
    delay_s: float = 0.0  # HANG_S: never answers
    fail_first: int = 0  # answer 500 to this many requests first
    body: bytes = b""
    extra_headers: str = ""
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"got {len(self.requests)} of {count} requests"
            await asyncio.sleep(0.01)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(headers, body, time.monotonic()))
            status = 500 if len(self.requests) <= self.fail_first else self.status
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-length: {len(self.body)}\r\nconnection: close\r\n"
                f"{self.extra_headers}\r\n".encode()
                + self.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def fast(settings: Settings, **overrides) -> Settings:
    """Settings for delivery tests: local receivers allowed, short timeouts and retries."""
    values = {
        "endpoints_allow_http": True,
        "endpoints_allow_private": True,
        "deliver_connect_timeout_ms": 500,
        "deliver_read_timeout_ms": 300,
        "deliver_retry_base_ms": 40,
        "deliver_retry_cap_ms": 200,
        "deliver_poll_interval_ms": 20,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@contextlib.asynccontextmanager
async def running_deliverer(settings: Settings) -> AsyncIterator[DeliveryMetrics]:
    redis = Redis.from_url(settings.redis_url)
    stop = asyncio.Event()
    metrics = DeliveryMetrics(CollectorRegistry())
    task = asyncio.create_task(Deliverer(settings, redis, metrics).run(stop))
    try:
        yield metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await redis.aclose()
