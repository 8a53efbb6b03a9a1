"""The recorder's own connection for its one hot call, the durable append (recorder.py `_apply`).

Why not redis-py for it: a worker makes that call once per group commit, and redis-py's per-call
machinery (connection pool, retry wrapper, a timeout context per read) costs about four times the round
trip itself: measured on this project's 2-core machine, 165-235 µs of CPU per call through `Script`
against 35-45 µs for the same EVALSHA written and parsed here (docs/performance.md). So this keeps only
what that call needs: one TCP connection to a single Redis (a cluster, TLS, a Unix socket or a
credential provider keep redis-py: `WriteLine.of` returns None), AUTH and SELECT when it connects,
commands packed and replies parsed by hiredis, one deadline timer per call.

Failure is redis-py's: a dropped connection, a refused one or a deadline passed closes the connection,
fails every call waiting on it with redis-py's ConnectionError or TimeoutError, and the next call
connects again, so the recorder spools and replays exactly as before. An error reply is raised as the
exception redis-py would raise (NoScriptError: the caller then loads the script through redis-py;
OutOfMemoryError...).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

# Without a socket timeout on the client, a call still gives up after this long.
DEFAULT_TIMEOUT_S = 1.0


class _Line(asyncio.Protocol):
    """One connection: replies are matched to calls in order (Redis answers in order)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future] = deque()
        # redis-py's own mapping of error replies to its exceptions (OOM -> OutOfMemoryError...).
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error, protocolError=InvalidResponse)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self.waiting:  # a reply nobody asked for: the stream is not what we think it is
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            future = self.waiting.popleft()
            if not future.done():  # a caller that was cancelled still had its reply read
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_waiting(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def expire(self) -> None:
        self.fail(RedisTimeoutError("Timeout reading from Redis"))

    def fail(self, exc: Exception) -> None:
        """Close the connection and fail every call waiting on it: after a deadline or a protocol
        error, the replies still to come cannot be matched to their calls any more."""
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: the caller awaiting it re-raises it


class WriteLine:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = None,
        client_name: str | None = None,
    ) -> None:
        self._address = (host, port)
        self._client_name = client_name
        self._auth = [username, password or ""] if username else [password] if password else []
        self._db = db
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._line: _Line | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    def of(cls, client: Any) -> WriteLine | None:
        """A line to the same Redis as `client`, with its credentials, database and timeouts; None when
        `client` is not a plain TCP client of one Redis."""
        if type(client) is not Redis:
            return None
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if pool.connection_class is not Connection or kwargs.get("credential_provider") is not None:
            return None
        timeout_s = kwargs.get("socket_timeout") or DEFAULT_TIMEOUT_S
        return cls(
            kwargs.get("host", "localhost"),
            int(kwargs.get("port", 6379)),
            db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            timeout_s=timeout_s,
            connect_timeout_s=kwargs.get("socket_connect_timeout") or timeout_s,
            # Told apart from the client's own pooled connections in CLIENT LIST.
            client_name=f"{kwargs['client_name']}-line" if kwargs.get("client_name") else None,
        )

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA `sha` with `keys` and `args`: the script's reply. Raises NoScriptError when Redis does
        not have the script, redis-py's other errors otherwise."""
        return await self._call((b"EVALSHA", sha, len(keys), *keys, *args))

    def close(self) -> None:
        self._closed = True
        if self._line is not None:
            self._line.fail(RedisConnectionError("closed"))
            self._line = None

    async def _call(self, command: tuple) -> Any:
        line = self._line
        if line is None or line.transport is None:
            line = await self._connect()
        return await self._send(line, command)

    async def _send(self, line: _Line, command: tuple) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        line.waiting.append(future)
        line.transport.write(hiredis.pack_command(command))  # type: ignore[union-attr]
        deadline = loop.call_later(self._timeout_s, line.expire)
        try:
            reply = await future
        finally:
            deadline.cancel()
        if isinstance(reply, Exception):  # an error reply (some, like WRONGPASS, are not ResponseErrors)
            raise reply
        return reply

    async def _connect(self) -> _Line:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        if self._closed:
            raise RedisConnectionError("the write line is closed")
        async with self._connecting:  # two calls at once (commit and replay) open one connection
            line = self._line
            if line is not None and line.transport is not None:
                return line
            loop = asyncio.get_running_loop()
            try:
                _, line = await asyncio.wait_for(
                    loop.create_connection(_Line, *self._address), self._connect_timeout_s
                )
            except (TimeoutError, OSError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self._address}: {exc!r}") from exc
            try:
                if self._auth:
                    await self._send(line, (b"AUTH", *self._auth))
                if self._db:
                    await self._send(line, (b"SELECT", self._db))
                if self._client_name:
                    await self._send(line, (b"CLIENT", b"SETNAME", self._client_name))
            except Exception:
                line.fail(RedisConnectionError("closed"))
                raise
            if self._closed:  # closed while it connected: the connection must not outlive the close
                line.fail(RedisConnectionError("closed"))
                raise RedisConnectionError("the write line is closed")
            self._line = line
            return line
