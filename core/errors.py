"""API errors: one exception type, rendered as `{"error": {"code", "message"}}` with its status; the
router's own errors (no route, wrong method) and unhandled ones are rendered the same way."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus

import orjson
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from core import repeats, validate
from core.redisclient import ReplicasBehind

log = logging.getLogger("clicktrail.api")
# Redis states that pass (down or restarting, a failover, memory full, replicas behind): the same request
# can succeed later, so it is told to retry. Anything else Redis refuses (a key of the wrong type, written
# by hand or by another program) is the server's fault and stays a 500, named and logged.
REDIS_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    ReplicasBehind,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # sent with the error (Retry-After)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route → 404, wrong method → 405 with `Allow`) as JSON errors."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = "no such path"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed here; allowed: {(exc.headers or {}).get('Allow', '')}"
    else:
        message = exc.detail
    return error_response(exc.status_code, _status_code_name(exc.status_code), message, exc.headers)


async def handle_redis_error(request: Request, exc: Exception) -> Response:
    """Redis failing in the middle of a request that did not catch it: a JSON 503 with Retry-After when the
    failure passes, else a JSON 500 naming the storage (not the generic internal_error)."""
    assert isinstance(exc, RedisError)
    if isinstance(exc, REDIS_TRANSIENT):
        log.warning("%s %s: Redis cannot serve it now: %r", request.method, request.url.path, exc)
        message = "Redis cannot serve this request now; retry"
        return error_response(503, "redis_unavailable", message, {"retry-after": "1"})
    log.error("%s %s: Redis refused: %r", request.method, request.url.path, exc)
    return error_response(500, "storage_error", "the stored data could not be read or written (logged)")


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug answers a JSON 500 too (Starlette still logs the traceback and re-raises)."""
    return error_response(500, "internal_error", "internal error")


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# The pieces a long JSON answer is sent in (`json_list`).
JSON_CHUNK_BYTES = 1 << 20


def json_list(name: str, items: Iterable[object]) -> list[bytes]:
    """`{name: [items]}` as orjson dumps it whole, in pieces of about JSON_CHUNK_BYTES, dumped an item at a
    time: for a long list built in a thread. One dump of the whole, or one join of its parts, is a single
    C call over the whole answer (241 MB for 10,000 codes of 200 assignments), which holds the GIL, and
    with it the event loop, 0.3 s. Sent with `json_pieces_response`."""
    chunks: list[bytes] = []
    parts = [b'{"' + name.encode() + b'":[']
    size = 0
    separator = b""
    for item in items:
        dumped = orjson.dumps(item)
        parts += (separator, dumped)
        separator = b","
        size += len(dumped) + 1
        if size >= JSON_CHUNK_BYTES:
            chunks.append(b"".join(parts))
            parts, size = [], 0
    parts.append(b"]}")
    chunks.append(b"".join(parts))
    return chunks


def json_pieces_response(chunks: list[bytes]) -> Response:
    """An answer `json_list` built, sent piece by piece (chunked: no piece is joined to the rest)."""

    async def pieces():
        for chunk in chunks:
            yield chunk

    return StreamingResponse(pieces(), media_type="application/json")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes` (never buffered beyond it), and
    with 400 if the client goes away before sending all of it (a truncated body is never parsed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        length = validate.content_length(declared)  # ASCII digits only: "²".isdigit() is true too
        if length is None:
            raise ApiError(400, "bad_content_length", "content-length must be a decimal number of bytes")
        if length > max_bytes:
            raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away before the body ended") from None
    return bytes(body)


async def read_json(request: Request, max_bytes: int = 64 * 1024) -> object:
    """The request body as JSON: 413 when oversize, 400 when truncated or malformed."""
    return parse_json(await read_body(request, max_bytes))


def parse_json(body: bytes) -> object:
    """A request body as JSON; 400 when malformed or when an object names a key twice (repeats.py)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    refuse_repeated_keys(body)
    return parsed


def refuse_repeated_keys(body: bytes) -> None:
    """400 when a JSON body, already parsed, names a key twice in one object."""
    try:
        key = repeats.repeated_json_key(body)
    except repeats.Unscannable as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if key is not None:
        raise ApiError(400, "repeated_key", f"body names the key {repeats.shown(key)} twice in one object")
