"""uvicorn's httptools protocol with the two limits it lacks on a request head: a deadline and a size.

uvicorn has no header-read timeout: a client that sends its request head one byte at a time (slowloris)
holds a connection, and its memory, for as long as it likes. Here a connection whose request head is not
complete within `header_timeout_s` is answered `408` and closed. The clock starts when the connection is
accepted (for the first request) or at the first byte of the next request on a keep-alive connection (the
idle time between requests is uvicorn's keep-alive timeout). A head larger than `MAX_HEAD_BYTES` is answered
`431` and closed. Request bodies are not covered: the endpoints that read one bound its size themselves.

Wired into uvicorn as `http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=...)` (server.py);
the partial pickles by reference, so it works with `--workers N` too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Far above any real browser or bot head (typically < 8 KiB) and nginx's default of 4 x 8 KiB buffers.
MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 5.0


def _closing_response(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    head = f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


_TIMEOUT_RESPONSE = _closing_response("408 Request Timeout", "request head not received in time")
_TOO_LARGE_RESPONSE = _closing_response("431 Request Header Fields Too Large", "request head too large")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # reading a request head (a new connection starts in one)
        self._raw_head_bytes = 0  # bytes received while the head is incomplete (a head that never ends)
        self._head_bytes = 0  # request target and headers the parser delivered (a head that came at once)
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._raw_head_bytes += len(data)
        super().data_received(data)
        too_large = self._refused or (self._in_head and self._raw_head_bytes > MAX_HEAD_BYTES)
        if too_large and not self.transport.is_closing():
            self._reject(_TOO_LARGE_RESPONSE)

    # Parser callbacks (run inside data_received).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if not self._in_head:  # the next request on a keep-alive connection
            self._in_head = True
            self._raw_head_bytes = 0
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refused = True  # never reaches the app; data_received answers 431 once parsing returns
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # The deadline.
    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._reject(_TIMEOUT_RESPONSE)

    def _reject(self, response: bytes) -> None:
        self._disarm()
        self._refused = True
        if self.cycle is None or self.cycle.response_complete:  # never inside a response being written
            self.transport.write(response)
        self.transport.close()
