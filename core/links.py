"""Links: the record, its Redis store, and the bounded per-worker cache in front of it.

A link lives at `Keys.link(code)` as msgpack. Every creation and change is also appended, in the same
transaction, to `Keys.link_events`: the ingester mirrors it into ClickHouse `links`, and every redirect
worker tails it to drop the code from its cache (linkwatch.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from itertools import accumulate
from typing import Annotated, Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core.clock import ms_datetime, now_ms
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


class Target(msgspec.Struct, frozen=True, gc=False):
    """One destination a smart link may send a viewer to, with the owner of its host, resolved like the
    link's own (`host` is the link's own host for an app deep link: the app is the shop's)."""

    url: str
    host: str
    merchant_id: str | None = None
    click_param: str = DEFAULT_CLICK_PARAM


class Rule(msgspec.Struct, frozen=True, gc=False):
    """Matches when every non-empty dimension contains the viewer's value (smartlinks.first_match)."""

    target: Target
    os: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    country: tuple[str, ...] = ()


class Variant(msgspec.Struct, frozen=True, gc=False):
    target: Target
    weight: int


class Smart(msgspec.Struct, frozen=True, gc=False):
    """The smart-link part of a link (rules, variants, expiry); None on a plain link, so the redirect
    pays one attribute test for it."""

    rules: tuple[Rule, ...] = ()
    variants: tuple[Variant, ...] = ()
    expires_at_ms: int = 0  # 0: never
    max_clicks: int = 0  # 0: no limit
    expired: Target | None = None  # where a viewer goes once expired (else 410 expired)
    # Derived from the fields above by `planned` (at write time, and again as a link enters a worker's
    # cache), so the redirect does not recompute them per request; never taken from the API.
    weight_bounds: tuple[int, ...] = ()  # running sums of the variants' weights
    country_rules: bool = False  # whether any rule names a country (only then is the IP looked up)

    def targets(self) -> list[Target]:
        found = [rule.target for rule in self.rules] + [variant.target for variant in self.variants]
        return found + ([self.expired] if self.expired is not None else [])


def planned(smart: Smart) -> Smart:
    """`smart` with its derived fields right (the very same object when they already are)."""
    bounds = tuple(accumulate(variant.weight for variant in smart.variants))
    country_rules = any(rule.country for rule in smart.rules)
    if (bounds, country_rules) == (smart.weight_bounds, smart.country_rules):
        return smart
    return msgspec.structs.replace(smart, weight_bounds=bounds, country_rules=country_rules)


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
    smart: Smart | None = None  # smart links: rules, variants, expiry (see redirector/smartlinks.py)
    open_in: str = OPEN_IN_DEFAULT  # a record stored before the field existed reads as "default"


_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
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


def decode_links(payloads: list[bytes]) -> Iterator[Link]:
    """The links of stored records, one at a time (a caller that drops each when done never frees them
    all at once); a record that cannot be decoded is left out."""
    for link in map(_decode_or_corrupt, payloads):
        if isinstance(link, Link):
            yield link


def _decode_or_corrupt(payload: bytes) -> Link | CorruptLink:
    try:
        return _decoder.decode(payload)
    except msgspec.MsgspecError as exc:
        return CorruptLink(str(exc))


# Link records read per command where many are read at once: a thousand links near the size limit (64 KB
# each) in one MGET were a 64 MB reply parsed in one piece on the event loop.
LINKS_PER_READ = 100


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
    smart: str = ""  # the smart-link fields as the API shows them (JSON), "" for a plain link


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
        smart=smart_json(link.smart),
    )
    return {"v": LINK_EVENT_VERSION, "l": _encoder.encode(event)}


def next_version_ms(link: Link) -> int:
    """The time stamp of a link's next version: now, but always after the previous one, so that two
    changes within a millisecond stay two versions in ClickHouse `links` (keyed by code and this)."""
    return max(now_ms(), (link.updated_at_ms or link.created_at_ms) + 1)


def smart_fields(smart: Smart | None) -> dict:
    """The smart-link fields of a link as the API shows and takes them (only those that are set)."""
    if smart is None:
        return {}
    out: dict = {}
    if smart.rules:
        out["rules"] = [
            {"when": {d: list(getattr(r, d)) for d in ("os", "device", "country") if getattr(r, d)},
             "url": r.target.url}
            for r in smart.rules
        ]  # fmt: skip
    if smart.variants:
        out["variants"] = [{"url": v.target.url, "weight": v.weight} for v in smart.variants]
    if smart.expires_at_ms:
        out["expires_at"] = iso_ms(smart.expires_at_ms)
    if smart.max_clicks:
        out["max_clicks"] = smart.max_clicks
    if smart.expired is not None:
        out["expired_url"] = smart.expired.url
    return out


def smart_json(smart: Smart | None) -> str:
    fields = smart_fields(smart)
    return _json_encoder.encode(fields).decode() if fields else ""


def iso_ms(ms: int) -> str:
    """Unix ms as ISO-8601 in UTC, exact: through a float, the last millisecond of a late year lost one
    (253402300799999 read as ...59.998Z)."""
    return ms_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def link_json(link: Link, public_url: str) -> dict:
    """A link as the outside sees it: the API's answers and the link.created/link.updated events share
    this one shape, so a field added here reaches both."""
    return {
        "code": link.code,
        "short_url": f"{public_url.rstrip('/')}/{link.code}",
        "url": link.url,
        "creator_id": link.creator_id,
        "merchant_id": link.merchant_id,
        "created_at": iso_ms(link.created_at_ms),
        "updated_at": iso_ms(link.updated_at_ms or link.created_at_ms),
        "disabled": link.disabled,
        **smart_fields(link.smart),
        "open_in": link.open_in,
    }


def with_owners(link: Link, owners: dict[str, tuple[str | None, str]]) -> Link:
    """The link with every destination (its own and each smart target) owned as `owners` says per host:
    the one ownership rule, applied to whichever destination a click will actually go to."""

    def owned(target: Target) -> Target:
        merchant_id, param = owners.get(target.host, (target.merchant_id, target.click_param))
        if (target.merchant_id, target.click_param) == (merchant_id, param):
            return target
        return msgspec.structs.replace(target, merchant_id=merchant_id, click_param=param)

    merchant_id, click_param = owners.get(link.host, (link.merchant_id, link.click_param))
    smart = link.smart
    if smart is not None:
        smart = msgspec.structs.replace(
            smart,
            rules=tuple(msgspec.structs.replace(r, target=owned(r.target)) for r in smart.rules),
            variants=tuple(msgspec.structs.replace(v, target=owned(v.target)) for v in smart.variants),
            expired=None if smart.expired is None else owned(smart.expired),
        )
    if (merchant_id, click_param, smart) == (link.merchant_id, link.click_param, link.smart):
        return link
    return msgspec.structs.replace(link, merchant_id=merchant_id, click_param=click_param, smart=smart)


def link_hosts(link: Link) -> list[str]:
    """Every destination host of a link (its own first), each once."""
    hosts = [link.host] + ([t.host for t in link.smart.targets()] if link.smart is not None else [])
    return list(dict.fromkeys(h for h in hosts if h))


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
        payloads = await self._raw_many(codes)
        return [None if p is None else _decode_or_corrupt(p) for p in payloads]

    async def _raw_many(self, codes: list[str]) -> list[bytes | None]:
        if self._keys.cluster:
            # Link records are spread over the slots: one pipeline, sent as one batch per node.
            async with self._redis.pipeline() as pipe:
                for code in codes:
                    pipe.get(self._keys.link(code))
                return await pipe.execute()
        return await self._redis.mget([self._keys.link(code) for code in codes])

    async def raw_by_creator(self, creator_id: str, limit: int, offset: int = 0) -> list[bytes]:
        """The stored records of a creator's links, newest first, `limit` of them after skipping the
        `offset` newest (`decode_links`), read LINKS_PER_READ at a time: a caller with many decodes them
        off the event loop, where they may be large."""
        key = self._keys.creator_links(creator_id)
        codes = [c.decode() for c in await self._redis.zrevrange(key, offset, offset + limit - 1)]
        raws: list[bytes | None] = []
        for start in range(0, len(codes), LINKS_PER_READ):
            raws += await self._raw_many(codes[start : start + LINKS_PER_READ])
        return [raw for raw in raws if raw is not None]

    async def codes(self, page: int = 5_000):
        """Every stored code (SCAN: no order, and a code stored meanwhile may or may not be seen). On a
        cluster, every primary's."""
        start = len(self._keys.link(""))
        async for key in self._redis.scan_iter(match=self._keys.link_pattern(), count=page):
            yield key[start:].decode()

    async def create(self, link: Link) -> bool:
        """Store a new link; False if the code is taken (disabled codes stay taken)."""
        keys = self._keys
        created = await self._redis.set(keys.link(link.code), encode_link(link), nx=True)
        if not created:
            return False
        # The event also clears a "no such code" that a worker may have cached before the link existed.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.creator_links(link.creator_id), {link.code: link.created_at_ms})
            self._index_hosts(pipe, link)
            pipe.xadd(keys.link_events, link_event(link))
            await pipe.execute()
        return True

    def _index_hosts(self, pipe: Any, link: Link) -> None:
        """Queue the host index entries of every host `link` sends to, and of their parent domains, so
        that a merchant registering any of them finds it (`claim_host`)."""
        for host in link_hosts(link):
            for name in host_candidates(host):
                pipe.sadd(self._keys.host_links(name), link.code)

    async def replace(self, link: Link) -> None:
        """Overwrite an existing link (disable, merchant claim) and tell every worker."""
        keys = self._keys
        if keys.cluster:
            # Not one slot: the record first, then its event (as `create` does everywhere).
            await self._redis.set(keys.link(link.code), encode_link(link))
            await self._redis.xadd(keys.link_events, link_event(link))
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.link(link.code), encode_link(link))
            pipe.xadd(keys.link_events, link_event(link))
            await pipe.execute()

    async def compare_and_replace(self, old: Link, new: Link) -> bool:
        """Store `new` over `old` (PATCH) and tell every worker, only if the stored record is still `old`
        (a disable, claim or other PATCH made meanwhile is never overwritten); False if it changed. The
        host indexes of new hosts are added in the same transaction. On a cluster, where the record and
        the indexes are in different slots: the indexes first (an entry for a PATCH that then loses its
        race only makes a later claim look at a link it leaves as it is), the record in a transaction
        WATCHing it alone, its event after it (as `replace`)."""
        keys = self._keys
        if not keys.cluster:
            return await self._replace_unchanged(old, new, with_indexes_and_event=True)
        async with self._redis.pipeline(transaction=False) as indexes:
            self._index_hosts(indexes, new)
            await indexes.execute()
        if not await self._replace_unchanged(old, new, with_indexes_and_event=False):
            return False
        await self._redis.xadd(keys.link_events, link_event(new))
        return True

    async def _replace_unchanged(self, old: Link, new: Link, with_indexes_and_event: bool) -> bool:
        key = self._keys.link(old.code)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                stored = await pipe.get(key)
                if stored is None or _decode_or_corrupt(stored) != old:
                    return False
                pipe.multi()
                pipe.set(key, encode_link(new))
                if with_indexes_and_event:
                    self._index_hosts(pipe, new)
                    pipe.xadd(self._keys.link_events, link_event(new))
                await pipe.execute()
                return True
            except WatchError:
                return False

    async def disable(self, code: str) -> Link | None:
        link = await self.get(code)
        if link is None:
            return None
        if not link.disabled:
            link = msgspec.structs.replace(link, disabled=True, updated_at_ms=next_version_ms(link))
            await self.replace(link)
        return link

    async def by_creator(self, creator_id: str, limit: int = 1000, offset: int = 0) -> list[Link]:
        """`raw_by_creator` decoded here: for a page of a few links (the dashboard's)."""
        return list(decode_links(await self.raw_by_creator(creator_id, limit, offset)))

    async def codes_of(self, creator_id: str, limit: int | None = None) -> list[str]:
        """The codes of a creator, newest first, all or the newest `limit` (no link record is read)."""
        last = -1 if limit is None else limit - 1
        codes = await self._redis.zrevrange(self._keys.creator_links(creator_id), 0, last)
        return [c.decode() for c in codes]

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
        if keys.cluster:
            changed = 0
            for code in codes:
                changed += await self._reconcile_one(code, resolve)
            return changed
        link_keys = [keys.link(code) for code in codes]
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:  # ends: each retry follows a write that committed meanwhile
                try:
                    await pipe.watch(*link_keys)
                    payloads = await pipe.mget(link_keys)
                    decoded = (_decode_or_corrupt(p) for p in payloads if p is not None)
                    found = [link for link in decoded if isinstance(link, Link)]  # a corrupt record stays
                    hosts = sorted({host for link in found for host in link_hosts(link)})
                    if not hosts:
                        return 0
                    await pipe.watch(
                        *sorted({keys.domain_owner(n) for h in hosts for n in host_candidates(h)})
                    )
                    owners = await resolve(pipe, hosts)
                    changed = [
                        msgspec.structs.replace(owned, updated_at_ms=next_version_ms(link))
                        for link in found
                        if (owned := with_owners(link, owners)) is not link
                    ]
                    pipe.multi()
                    for link in changed:
                        pipe.set(keys.link(link.code), encode_link(link))
                        pipe.xadd(keys.link_events, link_event(link))
                    await pipe.execute()
                    return len(changed)
                except WatchError:
                    continue

    async def _reconcile_one(self, code: str, resolve: OwnerResolver) -> int:
        """`reconcile` on a cluster, where link records are spread over the slots: one optimistic
        transaction per link (a disable made meanwhile is never overwritten), its event after it. The
        owners are read outside the WATCH (they live in another slot); an ownership change made meanwhile
        runs its own claim afterwards, which brings the link in line with it."""
        keys = self._keys
        key = keys.link(code)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:  # ends: each retry follows a write that committed meanwhile
                try:
                    await pipe.watch(key)
                    payload = await pipe.get(key)
                    link = None if payload is None else _decode_or_corrupt(payload)
                    if not isinstance(link, Link):
                        return 0
                    # Every host the link can send to (main, rules, variants), as `reconcile` does.
                    owners = await resolve(self._redis, sorted(link_hosts(link)))
                    owned = with_owners(link, owners)
                    if owned is link:
                        return 0
                    link = msgspec.structs.replace(owned, updated_at_ms=next_version_ms(link))
                    pipe.multi()
                    pipe.set(key, encode_link(link))
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        await self._redis.xadd(keys.link_events, link_event(link))
        return 1
