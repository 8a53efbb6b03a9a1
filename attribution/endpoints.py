"""Event endpoints: where a creator or a merchant wants its events sent, the URL rules (pure), and their
records in Redis.

An endpoint belongs to one owner (`creator:<id>` or `merchant:<id>`) and receives the events whose
subjects name that owner, of the types it chose. Its URL must be https on a public address unless the
operator allows plain http (`ENDPOINTS_ALLOW_HTTP`) or private addresses (`ENDPOINTS_ALLOW_PRIVATE`); the
delivery worker checks again the address it actually connects to (a name may resolve elsewhere later).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec
from redis.asyncio import Redis

from attribution.events_out import EVENT_TYPES
from core import validate
from core.keys import Keys
from core.urls import UrlError, is_public_ip, validate_url

log = logging.getLogger("clicktrail.endpoints")

MAX_ENDPOINT_URL_BYTES = 2048
MAX_DESCRIPTION_CHARS = 256
# Bounds the fan-out work one event causes for an owner.
MAX_ENDPOINTS_PER_OWNER = 20
ENDPOINT_ID_PREFIX = "ep_"
SECRET_BYTES = 24  # Standard Webhooks recommends 24-64 random bytes
RECORD_FIELD = "record"
# The drop reason of a stored record that does not decode (EndpointStore's `dropped`).
UNREADABLE_ENDPOINT = "unreadable_endpoint"


class EndpointError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Endpoint(msgspec.Struct, frozen=True):
    id: str
    owner: str  # "creator:<id>" or "merchant:<id>"
    url: str
    events: tuple[str, ...]
    secret: str
    created_at_ms: int
    description: str = ""


def check_url(raw: object, allow_http: bool, allow_private: bool) -> str:
    """The endpoint URL as it will be called, or EndpointError(`invalid_url.<reason>`): an absolute http(s)
    URL without credentials, https unless plain http is allowed, on a public host unless private ones are."""
    if isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > MAX_ENDPOINT_URL_BYTES:
        raise EndpointError("invalid_url.too_long", f"url is over {MAX_ENDPOINT_URL_BYTES} bytes")
    try:
        url = validate_url(raw).url
    except UrlError as exc:
        # validate_url refuses a non-public host only after every other check passed on the raw URL.
        if exc.reason != "non_public_host" or not allow_private:
            raise EndpointError(f"invalid_url.{exc.reason}", str(exc)) from None
        url = str(raw)
    if urlsplit(url).scheme.lower() != "https" and not allow_http:
        raise EndpointError("invalid_url.scheme", "endpoint URLs must be https")
    return url


def check_events(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise EndpointError("invalid_events", "events must be a non-empty list of event types")
    unknown = sorted(set(raw) - EVENT_TYPES.keys())
    if unknown:
        known = ", ".join(EVENT_TYPES)
        raise EndpointError("invalid_events", f"unknown event types {unknown}; known: {known}")
    return tuple(sorted(set(raw)))


def check_description(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_DESCRIPTION_CHARS or validate.has_control_chars(raw):
        raise EndpointError(
            "invalid_description", f"description must be text of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    return raw


def address_allowed(address: str, allow_private: bool) -> bool:
    """Whether the delivery worker may connect to this resolved address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return allow_private or is_public_ip(ip)


def new_endpoint(owner: str, url: str, events: tuple[str, ...], description: str, now_ms: int) -> Endpoint:
    return Endpoint(
        id=ENDPOINT_ID_PREFIX + secrets.token_hex(12),
        owner=owner,
        url=url,
        events=events,
        secret="whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode(),
        created_at_ms=now_ms,
        description=description,
    )


def public_view(endpoint: Endpoint) -> dict:
    """What the API shows after creation (the secret only once, at creation)."""
    kind, _, who = endpoint.owner.partition(":")
    return {
        "id": endpoint.id,
        f"{kind}_id": who,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "created_at_ms": endpoint.created_at_ms,
    }


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Endpoint)


class EndpointStore:
    """Records in `Keys.endpoint`, indexed per owner and globally. The indexes are written after the
    record and removed before it, never in one transaction with it (different entities): a record
    outside the index is invisible, and one in the index but gone is skipped. A record that does not decode
    is left out too, and `dropped(UNREADABLE_ENDPOINT)` is called each time it is read."""

    def __init__(self, redis: Redis, keys: Keys, dropped: Callable[[str], None]) -> None:
        self._redis = redis
        self._keys = keys
        self._dropped = dropped

    async def create(self, endpoint: Endpoint) -> bool:
        """False when the owner has MAX_ENDPOINTS_PER_OWNER already."""
        keys = self._keys
        if await self._redis.scard(keys.owner_endpoints(endpoint.owner)) >= MAX_ENDPOINTS_PER_OWNER:
            return False
        # The fan-out cursor starts at creation: the endpoint gets events from now on (replay reaches back).
        await self._redis.hset(
            keys.endpoint(endpoint.id),
            mapping={RECORD_FIELD: _encoder.encode(endpoint), "cursor": f"{endpoint.created_at_ms}-0"},
        )
        await self._redis.sadd(keys.owner_endpoints(endpoint.owner), endpoint.id)
        await self._redis.sadd(keys.endpoints, endpoint.id)
        return True

    async def get(self, endpoint_id: str) -> Endpoint | None:
        payload = await self._redis.hget(self._keys.endpoint(endpoint_id), RECORD_FIELD)
        return None if payload is None else self._decoded(endpoint_id, payload)

    async def of_owner(self, owner: str) -> list[Endpoint]:
        return await self._many(await self._redis.smembers(self._keys.owner_endpoints(owner)))

    async def all(self) -> list[Endpoint]:
        return await self._many(await self._redis.smembers(self._keys.endpoints))

    async def _many(self, ids) -> list[Endpoint]:
        ids = sorted(i.decode() for i in ids)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                pipe.hget(self._keys.endpoint(endpoint_id), RECORD_FIELD)
            payloads = await pipe.execute()
        found = (self._decoded(i, p) for i, p in zip(ids, payloads, strict=True) if p is not None)
        return [endpoint for endpoint in found if endpoint is not None]

    def _decoded(self, endpoint_id: str, payload: bytes) -> Endpoint | None:
        """A stored record, or None (logged and counted) for one this code cannot read, written by hand or
        by another version: it is left out, never allowed to stop the delivery of every other endpoint."""
        try:
            return _decoder.decode(payload)
        except msgspec.MsgspecError as exc:
            self._dropped(UNREADABLE_ENDPOINT)
            log.error("endpoint %s has an unreadable record, left out: %s", endpoint_id, exc)
            return None

    async def delete(self, endpoint: Endpoint) -> None:
        keys = self._keys
        await self._redis.srem(keys.endpoints, endpoint.id)
        await self._redis.srem(keys.owner_endpoints(endpoint.owner), endpoint.id)
        await self._redis.delete(
            keys.endpoint(endpoint.id), keys.endpoint_queue(endpoint.id), keys.endpoint_dead(endpoint.id)
        )
