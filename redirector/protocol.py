"""uvicorn's httptools protocol with the two limits it lacks on a request head: a deadline and a size.

uvicorn has no header-read timeout: a client that sends its request head one byte at a time (slowloris)
holds a connection, and its memory, for as long as it likes. Here a connection whose request head is not
complete within `header_timeout_s` is answered `408` and closed. The clock starts when the connection is
accepted (for the first request) or at the first byte of the next request on a keep-alive connection (the
idle time between requests is uvicorn's keep-alive timeout). A head larger than `MAX_HEAD_BYTES` is answered
`431` and closed. Request bodies are not covered: the endpoints that read one bound their size themselves.

The per-request cost matters (this sits in front of the redirect): no timer per request and no Python
callback per header. A connection reading a head only notes the time and joins a set; one sweeper per
server walks that set every `header_timeout_s / SWEEPS_PER_DEADLINE`, so a slow head is refused between
1 and 1.1 deadlines after it began. The head size is found with one `bytes.find` per read.

It also answers the common redirect itself: a GET or HEAD of a link already in the worker's cache goes
to `answer_now` of the app (app.py, redirect.py), which queues the click and calls back with the location
once the click is durable; the 302 is then written here. That skips what uvicorn builds per ASGI request
(a scope, a cycle with its event, a task, two messages and their header checks), about a third of the
worker's CPU per redirect. Anything else, and any request the app declines, takes the ASGI path unchanged.
A `_Pending` request stands in uvicorn's `cycle` slot, so uvicorn's own code for pipelining, a lost
connection and graceful shutdown treats it as a response in progress.

Wired into uvicorn as `http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=...)` (server.py);
the partial pickles by reference, so it works with `--workers N` too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Far above any real browser or bot head (typically < 8 KiB) and nginx's default of 4 x 8 KiB buffers.
MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 5.0
# After a refusal, how long the connection stays half-open (our side done writing, its input read and
# dropped) before it is closed. Closing a socket with unread input makes the kernel send a reset, which
# can destroy our 408/431 in the client's buffer before it reads it (nginx's "lingering close").
LINGER_S = 1.0
# A sweep walks only the connections still reading a head, so a finer one is cheap; at 4 a head was
# refused up to 1.25 deadlines late (6.25 s of a 5 s deadline), past what operators are told.
SWEEPS_PER_DEADLINE = 10
_HEAD_END = b"\r\n\r\n"


def _closing_response(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    head = f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


_FOUND = b"HTTP/1.1 302 Found\r\n"
_FOUND_HEADERS = b"cache-control: private, no-store\r\ncontent-length: 0\r\n"
_CLOSE = b"connection: close\r\n"
_TIMEOUT_RESPONSE = _closing_response("408 Request Timeout", "request head not received in time")
_TOO_LARGE_RESPONSE = _closing_response("431 Request Header Fields Too Large", "request head too large")


class _HeadSweeper:
    """The connections of one server that are reading a request head, and the timer that closes the late
    ones. Kept on uvicorn's per-server state, so several servers in one process never share it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.reading: dict[HeaderTimeoutProtocol, float] = {}
        self._loop = loop
        self._timeout_s = timeout_s
        self._interval_s = max(0.01, timeout_s / SWEEPS_PER_DEADLINE)
        self._handle: asyncio.TimerHandle | None = None

    def add(self, protocol: HeaderTimeoutProtocol) -> None:
        self.reading[protocol] = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_later(self._interval_s, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        cutoff = self._loop.time() - self._timeout_s
        late = [p for p, started in self.reading.items() if started <= cutoff]
        for protocol in late:
            self.reading.pop(protocol, None)
            protocol.head_timed_out()
        if self.reading:
            self._handle = self._loop.call_later(self._interval_s, self._sweep)


class _Pending:
    """A redirect answered by `answer_now`, in uvicorn's `cycle` slot: the attributes uvicorn reads and
    writes there (a lost connection, shutdown, a pipelined request, a body on a GET)."""

    __slots__ = ("body", "disconnected", "keep_alive", "more_body", "response_complete")

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.more_body = True
        self.body = b""

    @property
    def message_event(self) -> _Pending:
        return self  # uvicorn wakes the app on body or disconnect; here no app waits

    def set(self) -> None:
        pass


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state = self.server_state
        sweeper = getattr(state, "clicktrail_head_sweeper", None)
        if sweeper is None:
            sweeper = _HeadSweeper(self.loop, header_timeout_s)
            state.clicktrail_head_sweeper = sweeper
        self._sweeper = sweeper
        self._in_head = True  # reading a request head (a new connection starts in one)
        self._head_bytes = 0  # bytes of the current head received so far
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None
        # Only when uvicorn serves the app itself: a middleware around it (proxy headers, trace logging)
        # must see every request, so then there is no shortcut.
        self._answer_now = getattr(self.app, "answer_now", None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sweeper.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sweeper.reading.pop(self, None)
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            end = data.find(_HEAD_END)
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > MAX_HEAD_BYTES:
                self._reject(_TOO_LARGE_RESPONSE)  # before the parser, so the app never sees it
                return
        super().data_received(data)

    # Parser callbacks (run inside data_received).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a keep-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._sweeper.add(self)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._sweeper.reading.pop(self, None)
        if self._answer_now is None or not self._answered_now():
            super().on_headers_complete()

    def _answered_now(self) -> bool:
        parser = self.parser
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or parser.get_http_version() != "1.1":
            return False  # pipelined behind a response in progress, or HTTP/1.0: uvicorn's own handling
        if self.flow.write_paused:
            return False  # a client not reading its answers: uvicorn's path waits for the drain
        if parser.should_upgrade():
            return False
        url = httptools.parse_url(self.url)
        raw_path = url.path
        if b"%" in raw_path or self.root_path:
            return False
        pending = _Pending(parser.should_keep_alive())
        try:
            answered = self._answer_now(
                method.decode(),
                raw_path.decode("ascii"),
                url.query or b"",
                self.headers,
                self.client,
                lambda location: self._found(pending, location),
            )
        except Exception:  # inside the parser's callback a bug would become uvicorn's 400: take the ASGI path
            self.logger.exception("the redirect shortcut failed; answering through ASGI")
            return False
        if answered:
            self.cycle = pending  # type: ignore[assignment]
        return answered

    def _found(self, pending: _Pending, location: bytes) -> None:
        """The click is durable: write the 302 (unless the client has gone), as uvicorn would have."""
        pending.response_complete = True
        transport = self.transport
        if pending.disconnected or transport.is_closing():
            return
        head = [_FOUND]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head += (b"location: ", location, b"\r\n", _FOUND_HEADERS)
        if not pending.keep_alive:  # the client asked to close, or the server is shutting down
            head += (_CLOSE, b"\r\n")
            transport.write(b"".join(head))
            self.server_state.total_requests += 1
            transport.close()
            return
        head.append(b"\r\n")
        transport.write(b"".join(head))
        self.on_response_complete()

    def head_timed_out(self) -> None:
        if self._in_head and not self.transport.is_closing():
            self._reject(_TIMEOUT_RESPONSE)

    def _reject(self, response: bytes) -> None:
        self._sweeper.reading.pop(self, None)
        self._refused = True
        if self.cycle is None or self.cycle.response_complete:  # never inside a response being written
            self.transport.write(response)
        if self.transport.can_write_eof():
            # Half-close: the client reads the answer, then its EOF (or the linger) closes the connection.
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
