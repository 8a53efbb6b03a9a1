"""The merchant registry in Redis: merchant records, the domains they own, and webhook signing secrets.

- `Keys.merchant(id)`: the record (JSON); `Keys.merchants`: the set of ids.
- `Keys.domain_owner(domain)`: the merchant owning a registered domain, and `Keys.domain_owners(domain)`
  since when; who owns a host, and when a registration may change it, is core/domains.py. The attributor
  reads them to credit clicks recorded before the host had an owner, by the owner when the order came.
- `Keys.merchant_secrets(id)`: hash secret → expiry ms (0 = current). Rotation adds a new secret and gives
  the current one an expiry `ROTATION_GRACE_MS` away, so deliveries signed with either verify meanwhile;
  at most MAX_ACTIVE_SECRETS verify at once (a rotation during the overlap retires the oldest at once).
"""

from __future__ import annotations

import base64
import logging
import secrets

import msgspec
import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from attribution import currency, policy
from attribution.rates import RatesUpdate, initial_version
from core import validate as check
from core.domains import (
    OVERLAP_SAME,
    Overlap,
    find_overlaps,
    history_entries,
    parents,
    read_overlap_facts,
    read_owner_timelines,
    read_owners,
    transfer_entry,
    watched_keys,
)
from core.keys import Keys
from core.links import OwnerResolver
from core.urls import UrlError, non_public_domain, to_ascii_host

log = logging.getLogger("clicktrail.merchants")

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# How long the previous secret keeps verifying after a rotation: long enough for a merchant to deploy.
ROTATION_GRACE_MS = 24 * 3_600_000
# Secrets verifying at once: the current one and the one it replaced. Each costs one HMAC per unsigned or
# forged delivery, so a third rotation within the grace period retires the oldest at once.
MAX_ACTIVE_SECRETS = 2
# Domains one merchant registers: each is normalised and checked on the event loop (5,500 held it 122 ms).
MAX_DOMAINS_PER_MERCHANT = 1_000


class Merchant(msgspec.Struct, frozen=True):
    merchant_id: str
    name: str
    domains: list[str]
    currency: str
    default_rate_bps: int
    attribution_window_days: int = 30
    lock_days: int = 30
    click_param: str = check.DEFAULT_CLICK_PARAM
    created_at_ms: int = 0
    # attribution/policy.py: the current values, and every version with its time (records stored before
    # these fields existed read with the defaults)
    attribution_priority: str = policy.PRIORITY_CLICK
    review: policy.ReviewRules = policy.ReviewRules()
    policies: list[policy.Policy] = msgspec.field(default_factory=list)
    # Accepted order currencies (attribution/currency.py); None in records stored before the field.
    currencies: list[str] | None = None

    def accepted_currencies(self) -> list[str]:
        return currency.accepted(self.currencies, self.currency)


class InvalidMerchant(ValueError):
    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class DomainTaken(Exception):
    def __init__(self, overlaps: list[Overlap]) -> None:
        described = "; ".join(o.describe() for o in overlaps)
        super().__init__(f'{described} (an admin may pass "transfer_domains": true to take them over)')
        self.host = overlaps[0].domain
        self.owner = overlaps[0].owner
        self.overlaps = overlaps


def validate(merchant: Merchant) -> Merchant:
    """Check a merchant from the API and normalise its domains (lower case, no trailing dot)."""
    if not check.is_id(merchant.merchant_id):
        raise InvalidMerchant("merchant_id must be 1-64 chars of [A-Za-z0-9_-]")
    name = merchant.name
    if not name.strip() or len(name) > check.MAX_NAME_CHARS or check.has_control_chars(name):
        raise InvalidMerchant(
            f"name must be 1-{check.MAX_NAME_CHARS} characters, not all blank, without control characters"
        )
    if not currency.is_iso(merchant.currency):  # a code money can be booked in, not three capitals
        raise InvalidMerchant("currency must be an ISO 4217 code such as EUR")
    try:
        currencies = currency.check_currencies(merchant.currencies, merchant.currency)
    except currency.InvalidCurrencies as exc:
        raise InvalidMerchant(str(exc)) from None
    if not 0 <= merchant.default_rate_bps <= 10_000:
        raise InvalidMerchant("default_rate_bps must be 0-10000")
    if not 0 < merchant.attribution_window_days <= 365 or not 0 <= merchant.lock_days <= 365:
        raise InvalidMerchant("attribution_window_days must be 1-365 and lock_days 0-365")
    if not check.is_click_param(merchant.click_param):
        raise InvalidMerchant("click_param must be 1-64 URL-safe chars")
    try:
        policy.check_priority(merchant.attribution_priority)
        policy.check_review(merchant.review)
    except policy.InvalidField as exc:
        raise InvalidMerchant(str(exc)) from None
    return msgspec.structs.replace(merchant, domains=_domains(merchant.domains), currencies=currencies)


def _domains(given: list[str]) -> list[str]:
    """A merchant's domains, normalised (lower case, no trailing dot) and checked."""
    if len(given) > MAX_DOMAINS_PER_MERCHANT:
        raise InvalidMerchant(f"a merchant registers at most {MAX_DOMAINS_PER_MERCHANT} domains")
    try:
        # Spelled as links' hosts are (core/urls.py), so that a claim matches its links in either spelling.
        domains = sorted({to_ascii_host(d.strip()) for d in given})
    except UrlError as exc:
        raise InvalidMerchant(f"domains must be host names: {exc}") from None
    if not domains or not all(check.is_host(d) for d in domains):
        raise InvalidMerchant("domains must be a non-empty list of host names")
    for domain in domains:
        if (problem := non_public_domain(domain)) is not None:
            raise InvalidMerchant(f"{problem}: a merchant's domains are public names", "non_public_host")
    return domains


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def merchant_exists(redis: Redis, keys: Keys, merchant_id: str) -> bool:
    return bool(await redis.exists(keys.merchant(merchant_id)))


async def link_owners(
    redis: Redis, keys: Keys, hosts: list[str], default_param: str
) -> dict[str, tuple[str | None, str]]:
    """The merchant (None if none) that links on each host belong to and the click parameter they carry:
    what a new link gets and what `LinkStore.claim_host` brings old links in line with."""
    owners = await read_owners(redis, keys, hosts)
    ids = sorted({o for o in owners.values() if o})
    raws = await redis.mget([keys.merchant(i) for i in ids]) if ids else []
    params = {
        i: msgspec.json.decode(raw, type=Merchant).click_param if raw else check.DEFAULT_CLICK_PARAM
        for i, raw in zip(ids, raws, strict=True)
    }
    return {h: (o, params[o]) if o else (None, default_param) for h, o in owners.items()}


def owner_resolver(keys: Keys, default_param: str) -> OwnerResolver:
    """Who owns a host (the most specific registered domain, as the attributor decides) and the click
    parameter its links carry: the one rule for new links and for claiming old ones."""

    async def resolve(client: Redis, hosts: list[str]) -> dict[str, tuple[str | None, str]]:
        return await link_owners(client, keys, hosts, default_param)

    return resolve


class MerchantStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, merchant_id: str) -> Merchant | None:
        if not check.is_id(merchant_id):
            return None
        raw = await self._redis.get(self._keys.merchant(merchant_id))
        return None if raw is None else msgspec.json.decode(raw, type=Merchant)

    async def page(self, after: str, limit: int) -> tuple[list[Merchant], int, str]:
        """The admin's list: up to `limit` merchants by id after `after`, how many there are, and the id
        to continue after ("" on the last page). The ids are read whole (a few bytes each); only the
        page's records are read and decoded."""
        ids = sorted(m.decode() for m in await self._redis.smembers(self._keys.merchants))
        later = [i for i in ids if i > after]
        shown = later[:limit]
        found = await self._redis.mget([self._keys.merchant(i) for i in shown]) if shown else []
        merchants = [msgspec.json.decode(raw, type=Merchant) for raw in found if raw is not None]
        return merchants, len(ids), shown[-1] if len(later) > limit else ""

    async def create(
        self,
        merchant: Merchant,
        transfer_domains: bool = False,
        now_ms: int = 0,
        rates: RatesUpdate | None = None,
    ) -> bool:
        """`register`, True if the merchant was stored."""
        return await self.register(merchant, transfer_domains, now_ms, rates=rates) is not None

    async def register(
        self,
        merchant: Merchant,
        transfer_domains: bool = False,
        now_ms: int = 0,
        secret: str | None = None,
        rates: RatesUpdate | None = None,
    ) -> list[Overlap] | None:
        """Store a new merchant, its domains, its first rate version (`rates`, by default just its default
        rate) and, if given, its first webhook secret in one optimistic transaction (WATCH on every key
        the check read: of two registrations at once, one sees the other), so no merchant ever exists
        without the secret and rates it needs. None if the id exists. Raises DomainTaken, storing nothing,
        if a domain overlaps another merchant's (attribution/domains.py), unless `transfer_domains`: then
        the overlaps are recorded, logged and returned."""
        keys = self._keys
        merchant_id = merchant.merchant_id
        await self._ensure_domain_index()
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:  # ends: each retry follows a registration that committed meanwhile
                try:
                    await pipe.watch(
                        keys.merchant(merchant_id),
                        keys.rates(merchant_id),
                        *watched_keys(keys, merchant.domains),
                    )
                    # EXISTS by name: a cluster pipeline's `exists` is never sent inside WATCH (redis-py).
                    if await pipe.execute_command("EXISTS", keys.merchant(merchant_id)):
                        return None
                    first_rates = initial_version(
                        await pipe.lindex(keys.rates(merchant_id), -1),
                        now_ms,
                        rates or RatesUpdate(default_rate_bps=merchant.default_rate_bps),
                    )
                    owned, below = await read_overlap_facts(pipe, keys, merchant.domains)
                    overlaps = find_overlaps(merchant_id, merchant.domains, owned, below)
                    if overlaps and not transfer_domains:
                        raise DomainTaken(overlaps)
                    losers = await self._losing_records(pipe, overlaps)
                    # Each domain's last ownership entry (watched): history_entries dates the next after it.
                    latest = {
                        domain: await pipe.lindex(keys.domain_owners(domain), -1)
                        for domain in merchant.domains
                    }
                    pipe.multi()
                    pipe.set(
                        keys.merchant(merchant_id), msgspec.json.encode(_with_first_policy(merchant, now_ms))
                    )
                    pipe.sadd(keys.merchants, merchant_id)
                    pipe.rpush(keys.rates(merchant_id), first_rates)
                    if secret is not None:
                        pipe.hset(keys.merchant_secrets(merchant_id), secret, 0)
                    for domain, entry in history_entries(
                        merchant_id, merchant.domains, owned, latest, now_ms
                    ):
                        pipe.rpush(keys.domain_owners(domain), entry)
                        pipe.set(keys.domain_owner(domain), merchant_id)
                        for parent in parents(domain):
                            pipe.hset(keys.domain_subdomains(parent), domain, merchant_id)
                    for loser in losers:
                        pipe.set(keys.merchant(loser.merchant_id), msgspec.json.encode(loser))
                    for overlap in overlaps:
                        pipe.xadd(keys.domain_transfers, transfer_entry(overlap, merchant_id, now_ms))
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        for overlap in overlaps:
            log.warning("domain transfer to merchant %r: %s", merchant_id, overlap.describe())
        return overlaps

    async def patch(self, merchant_id: str, changes: dict, now_ms: int) -> Merchant | None:
        """Apply validated PATCH changes (policy.checked_patch) to the record, appending a policy version
        when a policy field changed; None if there is no such merchant. WATCH on the record alone: the
        record is the only key written."""
        key = self._keys.merchant(merchant_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        await pipe.unwatch()
                        return None
                    record = msgspec.structs.replace(msgspec.json.decode(raw, type=Merchant), **changes)
                    current = policy.Policy(now_ms, record.attribution_priority, record.review)
                    record = msgspec.structs.replace(
                        record, policies=policy.next_policies(record.policies, current, now_ms)
                    )
                    pipe.multi()
                    pipe.set(key, msgspec.json.encode(record))
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    async def _losing_records(self, pipe, overlaps: list[Overlap]) -> list[Merchant]:
        """The records of merchants whose very domain moves, without it (read under WATCH)."""
        lost: dict[str, set[str]] = {}
        for overlap in overlaps:
            if overlap.kind == OVERLAP_SAME:
                lost.setdefault(overlap.owner, set()).add(overlap.taken)
        records = []
        for owner, domains in sorted(lost.items()):
            await pipe.watch(self._keys.merchant(owner))
            raw = await pipe.get(self._keys.merchant(owner))
            if raw is not None:
                record = msgspec.json.decode(raw, type=Merchant)
                kept = [d for d in record.domains if d not in domains]
                records.append(msgspec.structs.replace(record, domains=kept))
        return records

    async def _ensure_domain_index(self) -> None:
        """Build `Keys.domain_subdomains` once from the merchants registered before it existed."""
        keys = self._keys
        if await self._redis.exists(keys.domain_index):
            return
        ids = sorted(m.decode() for m in await self._redis.smembers(keys.merchants))
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw in await self._redis.mget([keys.merchant(i) for i in ids]) if ids else []:
                record = None if raw is None else msgspec.json.decode(raw, type=Merchant)
                domains = record.domains if record else []
                found = await self._redis.mget([keys.domain_owner(d) for d in domains]) if domains else []
                for domain, owner in zip(domains, found, strict=True):
                    for parent in parents(domain) if owner else []:
                        pipe.hset(keys.domain_subdomains(parent), domain, owner)
            pipe.set(keys.domain_index, "1")
            await pipe.execute()

    async def owner_timelines(self, hosts: list[str]) -> dict[str, tuple[str, tuple[tuple[int, str], ...]]]:
        """(the owner now, since when each owned it: domains.host_timeline) of each host."""
        return await read_owner_timelines(self._redis, self._keys, hosts)

    async def owners(self, hosts: list[str]) -> dict[str, str]:
        """The current owner of each host ('' if none), by the one rule of attribution/domains.py."""
        return await read_owners(self._redis, self._keys, hosts)

    # --- webhook secrets ---------------------------------------------------------------------------
    async def add_secret(
        self, merchant_id: str, now_ms: int, grace_ms: int = ROTATION_GRACE_MS
    ) -> tuple[str, int]:
        """Make a new current secret (see `rotation`). Returns it and the previous one's expiry (0 if
        there was none). Atomic: concurrent rotations never leave more than MAX_ACTIVE_SECRETS active."""
        key = self._keys.merchant_secrets(merchant_id)
        secret = new_secret()
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = {s.decode(): int(e) for s, e in (await pipe.hgetall(key)).items()}
                    updates, deleted, expiry = rotation(current, secret, now_ms, grace_ms)
                    pipe.multi()
                    pipe.hset(key, mapping=updates)
                    if deleted:
                        pipe.hdel(key, *deleted)
                    await pipe.execute()
                    return secret, expiry
                except WatchError:
                    continue

    async def active_secrets(self, merchant_id: str, now_ms: int) -> list[str]:
        found = await self._redis.hgetall(self._keys.merchant_secrets(merchant_id))
        return select_active({s.decode(): int(e) for s, e in found.items()}, now_ms)


def _newest_first(secrets_expiry: dict[str, int], now_ms: int) -> list[tuple[str, int]]:
    """The secrets still verifying at `now_ms`: the current one (expiry 0) first, then by latest expiry."""
    active = [(s, e) for s, e in secrets_expiry.items() if e == 0 or e > now_ms]
    return sorted(active, key=lambda item: (item[1] != 0, -item[1], item[0]))


def select_active(secrets_expiry: dict[str, int], now_ms: int) -> list[str]:
    """The secrets a webhook is verified against: at most MAX_ACTIVE_SECRETS, newest first, so an unsigned
    delivery costs at most that many HMACs whatever is stored."""
    return [s for s, _ in _newest_first(secrets_expiry, now_ms)[:MAX_ACTIVE_SECRETS]]


def rotation(
    current: dict[str, int], new: str, now_ms: int, grace_ms: int
) -> tuple[dict[str, int], list[str], int]:
    """A rotation as (hash updates, secrets to delete, the previous secret's expiry or 0).
    `new` becomes the current secret; the newest previously active one keeps verifying for `grace_ms`
    (never longer than it already would); any older one still in its grace period is retired at once, so
    at most MAX_ACTIVE_SECRETS verify. Expired ones are pruned."""
    active = _newest_first(current, now_ms)
    updates = {new: 0}
    expiry = 0
    if active:
        previous, previous_expiry = active[0]
        expiry = now_ms + grace_ms if previous_expiry == 0 else min(previous_expiry, now_ms + grace_ms)
        updates[previous] = expiry
    deleted = [s for s in current if s not in updates]
    return updates, deleted, expiry


def _with_first_policy(merchant: Merchant, now_ms: int) -> Merchant:
    first = policy.Policy(now_ms, merchant.attribution_priority, merchant.review)
    return msgspec.structs.replace(merchant, policies=[first])


def policy_snapshot(merchant: Merchant) -> policy.Snapshot:
    """Every policy version; a record from before versions existed has one: its current values."""
    versions = merchant.policies or [policy.Policy(0, merchant.attribution_priority, merchant.review)]
    return policy.Snapshot(tuple(versions))


def public_view(merchant: Merchant) -> dict:
    view = orjson.loads(msgspec.json.encode(merchant))
    view.pop("policies", None)  # the history is the attributor's; the API shows the current values
    return view
