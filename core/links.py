"""Links: the record, its Redis store, and the bounded per-worker cache in front of it.

A link lives at `Keys.link(code)` as msgpack. Every creation and change is also appended, in the same
transaction, to `Keys.link_events`: the ingester mirrors it into ClickHouse `links`, and every redirect
worker tails it to drop the code from its cache (linkwatch.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core.clock import now_ms
from core.errors import ApiError
from core.keys import Keys
from core.urls import host_candidates
from core.validate import DEFAULT_CLICK_PARAM

LINK_EVENT_VERSION = b"1"
# Links re-checked per optimistic transaction when a domain is claimed: bounds the keys one WATCH holds.
CLAIM_BATCH_LINKS = 500

# (client, hosts) → host → (owning merchant or None, click parameter): the ownership rule
# (attribution/domains.py), read through the client given so that it runs inside a WATCH.
OwnerResolver = Callable[[Redis, list[str]], Awaitable[dict[str, tuple[str | None, str]]]]

# `open_in`: "browser" asks for the in-app browser escape page (redirector/escape.py); "default" is the 302.
OPEN_IN_DEFAULT = "default"
OPEN_IN_BROWSER = "browser"
OPEN_IN_VALUES = (OPEN_IN_DEFAULT, OPEN_IN_BROWSER)


class Link(msgspec.Struct, frozen=True, gc=False):
    # gc=False: only strings, numbers and bools inside; a full link cache adds nothing to collections.
    code: str
    url: str
    creator_id: str
    host: str
    created_at_ms: int
    merchant_id: str | None = None
    click_param: str = DEFAULT_CLICK_PARAM
    disabled: bool = False
    updated_at_ms: int = 0
    open_in: str = OPEN_IN_DEFAULT  # a record stored before the field existed reads as "default"


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Link)


def check_open_in(value: object) -> str:
    """The `open_in` of a link body (absent: "default"); anything else is a 422 (one validator for every
    endpoint that takes the field)."""
    if value is None:
        return OPEN_IN_DEFAULT
    if not isinstance(value, str) or value not in OPEN_IN_VALUES:
        raise ApiError(422, "invalid_open_in", 'open_in must be "default" or "browser"')
    return value


def encode_link(link: Link) -> bytes:
    return _encoder.encode(link)


def decode_link(payload: bytes) -> Link:
    return _decoder.decode(payload)


class CorruptLink(Exception):
    """A stored link record that does not decode as a Link."""


def _decode_or_corrupt(payload: bytes) -> Link | CorruptLink:
    try:
        return _decoder.decode(payload)
    except msgspec.MsgspecError as exc:
        return CorruptLink(str(exc))


# What ClickHouse's DateTime can hold: an event outside it is dead-lettered by the ingester at decode time
# instead of failing its batch's insert for ever.
EventMs = Annotated[int, msgspec.Meta(ge=0, lt=2**32 * 1000)]


class LinkEvent(msgspec.Struct, frozen=True):
    """One version of a link as the link-change stream carries it (field `l`); the ingester decodes the
    same struct into ClickHouse `links`."""

    code: str
    url: str
    creator_id: str
    merchant_id: str  # "" while no merchant owns the host
    host: str
    created_at_ms: EventMs
    disabled: bool
    updated_at_ms: EventMs


def link_event(link: Link) -> dict[str, bytes]:
    """The stream entry of one link version."""
    event = LinkEvent(
        code=link.code,
        url=link.url,
        creator_id=link.creator_id,
        merchant_id=link.merchant_id or "",
        host=link.host,
        created_at_ms=link.created_at_ms,
        disabled=link.disabled,
        updated_at_ms=link.updated_at_ms or link.created_at_ms,
    )
    return {"v": LINK_EVENT_VERSION, "l": _encoder.encode(event)}


class LinkStore:
    """Links in Redis. Writes are atomic per link (MULTI) and always announce the change."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, code: str) -> Link | None:
        payload = await self._redis.get(self._keys.link(code))
        return None if payload is None else decode_link(payload)

    async def get_many(self, codes: list[str]) -> list[Link | CorruptLink | None]:
        """Each code's link, None when there is none, or CorruptLink for a record that cannot be decoded
        (one bad record must not fail the lookups batched with it)."""
        payloads = await self._redis.mget([self._keys.link(code) for code in codes])
        return [None if p is None else _decode_or_corrupt(p) for p in payloads]

    async def create(self, link: Link) -> bool:
        """Store a new link; False if the code is taken (disabled codes stay taken)."""
        keys = self._keys
        created = await self._redis.set(keys.link(link.code), encode_link(link), nx=True)
        if not created:
            return False
        # The event also clears a "no such code" that a worker may have cached before the link existed.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.creator_links(link.creator_id), {link.code: link.created_at_ms})
            for name in host_candidates(link.host):  # so a merchant registering a parent domain finds it
                pipe.sadd(keys.host_links(name), link.code)
            pipe.xadd(keys.link_events, link_event(link))
            await pipe.execute()
        return True

    async def replace(self, link: Link) -> None:
        """Overwrite an existing link (disable, merchant claim) and tell every worker."""
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.link(link.code), encode_link(link))
            pipe.xadd(keys.link_events, link_event(link))
            await pipe.execute()

    async def disable(self, code: str) -> Link | None:
        link = await self.get(code)
        if link is None:
            return None
        if not link.disabled:
            link = msgspec.structs.replace(link, disabled=True, updated_at_ms=now_ms())
            await self.replace(link)
        return link

    async def by_creator(self, creator_id: str, limit: int = 1000) -> list[Link]:
        codes = await self._redis.zrevrange(self._keys.creator_links(creator_id), 0, limit - 1)
        if not codes:
            return []
        found = await self.get_many([c.decode() for c in codes])
        return [link for link in found if isinstance(link, Link)]

    async def claim_host(self, host: str, resolve: OwnerResolver) -> int:
        """Bring every link on `host` or below it in line with the current owner of its own host (a link on
        a more specific domain of another merchant keeps that merchant); returns how many changed."""
        codes = sorted(c.decode() for c in await self._redis.smembers(self._keys.host_links(host)))
        changed = 0
        for start in range(0, len(codes), CLAIM_BATCH_LINKS):
            changed += await self.reconcile(codes[start : start + CLAIM_BATCH_LINKS], resolve)
        return changed

    async def reconcile(self, codes: list[str], resolve: OwnerResolver) -> int:
        """Give each link the merchant and click parameter that `resolve` names for its host, in one
        optimistic transaction that WATCHes the links and the ownership of their hosts: a disable or an
        ownership change made meanwhile is never overwritten with what was read before it."""
        keys = self._keys
        link_keys = [keys.link(code) for code in codes]
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:  # ends: each retry follows a write that committed meanwhile
                try:
                    await pipe.watch(*link_keys)
                    payloads = await pipe.mget(link_keys)
                    decoded = (_decode_or_corrupt(p) for p in payloads if p is not None)
                    found = [link for link in decoded if isinstance(link, Link)]  # a corrupt record stays
                    hosts = sorted({link.host for link in found})
                    if not hosts:
                        return 0
                    await pipe.watch(
                        *sorted({keys.domain_owner(n) for h in hosts for n in host_candidates(h)})
                    )
                    owners = await resolve(pipe, hosts)
                    changed = [
                        msgspec.structs.replace(
                            link,
                            merchant_id=owners[link.host][0],
                            click_param=owners[link.host][1],
                            updated_at_ms=now_ms(),
                        )
                        for link in found
                        if (link.merchant_id, link.click_param) != owners[link.host]
                    ]
                    pipe.multi()
                    for link in changed:
                        pipe.set(keys.link(link.code), encode_link(link))
                        pipe.xadd(keys.link_events, link_event(link))
                    await pipe.execute()
                    return len(changed)
                except WatchError:
                    continue
