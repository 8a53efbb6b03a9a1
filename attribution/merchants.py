"""The merchant registry in Redis: merchant records, the domains they own, and webhook signing secrets.

- `Keys.merchant(id)`: the record (JSON); `Keys.merchants`: the set of ids.
- `Keys.domain_owner(host)`: the merchant owning a destination host, claimed with SET NX so a host never
  has two owners. The attributor reads it to credit clicks recorded before the host had an owner.
- `Keys.merchant_secrets(id)`: hash secret → expiry ms (0 = current). Rotation adds a new secret and gives
  the current one an expiry `ROTATION_GRACE_MS` away, so deliveries signed with either verify meanwhile;
  at most MAX_ACTIVE_SECRETS verify at once (a rotation during the overlap retires the oldest at once).
"""

from __future__ import annotations

import base64
import re
import secrets

import msgspec
import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from clicktrail.keys import Keys
from redirector.urls import host_candidates

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# How long the previous secret keeps verifying after a rotation: long enough for a merchant to deploy.
ROTATION_GRACE_MS = 24 * 3_600_000
# Secrets verifying at once: the current one and the one it replaced. Each costs one HMAC per unsigned or
# forged delivery, so a third rotation within the grace period retires the oldest at once.
MAX_ACTIVE_SECRETS = 2
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
DEFAULT_CLICK_PARAM = "ct_click"
PARAM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Merchant(msgspec.Struct, frozen=True):
    merchant_id: str
    name: str
    domains: list[str]
    currency: str
    default_rate_bps: int
    attribution_window_days: int = 30
    lock_days: int = 30
    click_param: str = DEFAULT_CLICK_PARAM
    created_at_ms: int = 0


class InvalidMerchant(ValueError):
    pass


class DomainTaken(Exception):
    def __init__(self, host: str, owner: str) -> None:
        super().__init__(f"domain {host!r} is already owned by merchant {owner!r}")
        self.host = host
        self.owner = owner


def validate(merchant: Merchant) -> Merchant:
    """Check a merchant from the API and normalise its domains (lower case, no trailing dot)."""
    if not ID_RE.match(merchant.merchant_id):
        raise InvalidMerchant("merchant_id must be 1-64 chars of [A-Za-z0-9_-]")
    if not merchant.name.strip():
        raise InvalidMerchant("name must not be empty")
    if not CURRENCY_RE.match(merchant.currency):
        raise InvalidMerchant("currency must be an ISO 4217 code such as EUR")
    if not 0 <= merchant.default_rate_bps <= 10_000:
        raise InvalidMerchant("default_rate_bps must be 0-10000")
    if not 0 < merchant.attribution_window_days <= 365 or not 0 <= merchant.lock_days <= 365:
        raise InvalidMerchant("attribution_window_days must be 1-365 and lock_days 0-365")
    if not PARAM_RE.match(merchant.click_param):
        raise InvalidMerchant("click_param must be 1-64 URL-safe chars")
    domains = sorted({d.strip().lower().rstrip(".") for d in merchant.domains})
    if not domains or not all(HOST_RE.match(d) for d in domains):
        raise InvalidMerchant("domains must be a non-empty list of host names")
    return msgspec.structs.replace(merchant, domains=domains)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def merchant_exists(redis: Redis, keys: Keys, merchant_id: str) -> bool:
    return bool(await redis.exists(keys.merchant(merchant_id)))


async def click_param_of(redis: Redis, keys: Keys, merchant_id: str) -> str:
    """The query parameter that carries the click id to this merchant's pages."""
    raw = await redis.get(keys.merchant(merchant_id))
    return msgspec.json.decode(raw, type=Merchant).click_param if raw else DEFAULT_CLICK_PARAM


class MerchantStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, merchant_id: str) -> Merchant | None:
        if not ID_RE.match(merchant_id):
            return None
        raw = await self._redis.get(self._keys.merchant(merchant_id))
        return None if raw is None else msgspec.json.decode(raw, type=Merchant)

    async def create(self, merchant: Merchant) -> bool:
        """Store a new merchant and claim its domains; False if the id exists. Raises DomainTaken (and
        stores nothing) if another merchant owns one of the domains."""
        keys = self._keys
        for host in merchant.domains:
            owner = await self._redis.get(keys.domain_owner(host))
            if owner is not None and owner.decode() != merchant.merchant_id:
                raise DomainTaken(host, owner.decode())
        if not await self._redis.set(
            keys.merchant(merchant.merchant_id), msgspec.json.encode(merchant), nx=True
        ):
            return False
        await self._redis.sadd(keys.merchants, merchant.merchant_id)
        for host in merchant.domains:
            # SET NX: if another merchant won a race for this host since the check above, it keeps it.
            await self._redis.set(keys.domain_owner(host), merchant.merchant_id, nx=True)
        return True

    async def owners(self, hosts: list[str]) -> dict[str, str]:
        """The current owner of each host ('' if none), by the host or its nearest owned parent domain."""
        names = sorted({name for host in hosts for name in host_candidates(host)})
        if not names:
            return {}
        found = await self._redis.mget([self._keys.domain_owner(n) for n in names])
        owner_of = {n: o.decode() for n, o in zip(names, found, strict=True) if o}
        return {h: next((owner_of[n] for n in host_candidates(h) if n in owner_of), "") for h in hosts}

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


def public_view(merchant: Merchant) -> dict:
    return orjson.loads(msgspec.json.encode(merchant))
