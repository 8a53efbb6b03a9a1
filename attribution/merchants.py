"""The merchant registry in Redis: merchant records, the domains they own, and webhook signing secrets.

- `Keys.merchant(id)`: the record (JSON); `Keys.merchants`: the set of ids.
- `Keys.domain_owner(host)`: the merchant owning a destination host, claimed with SET NX so a host never
  has two owners. The attributor reads it to credit clicks recorded before the host had an owner.
- `Keys.merchant_secrets(id)`: hash secret → expiry ms (0 = active). Rotation adds a new secret and gives
  the active ones an expiry `rotation_grace_ms` away, so deliveries signed with either verify meanwhile.
"""

from __future__ import annotations

import base64
import secrets

import msgspec
import orjson
from redis.asyncio import Redis

from clicktrail import validate as check
from clicktrail.keys import Keys
from redirector.urls import host_candidates

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# How long the previous secret keeps verifying after a rotation: long enough for a merchant to deploy.
ROTATION_GRACE_MS = 24 * 3_600_000
# Full-match patterns (clicktrail/validate.py); kept under these names for the modules that import them.
ID_RE, HOST_RE, CURRENCY_RE, PARAM_RE = check.ID_RE, check.HOST_RE, check.CURRENCY_RE, check.CLICK_PARAM_RE
DEFAULT_CLICK_PARAM = check.DEFAULT_CLICK_PARAM


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
    if not check.is_id(merchant.merchant_id):
        raise InvalidMerchant("merchant_id must be 1-64 chars of [A-Za-z0-9_-]")
    if not merchant.name.strip():
        raise InvalidMerchant("name must not be empty")
    if not check.is_currency(merchant.currency):
        raise InvalidMerchant("currency must be an ISO 4217 code such as EUR")
    if not 0 <= merchant.default_rate_bps <= 10_000:
        raise InvalidMerchant("default_rate_bps must be 0-10000")
    if not 0 < merchant.attribution_window_days <= 365 or not 0 <= merchant.lock_days <= 365:
        raise InvalidMerchant("attribution_window_days must be 1-365 and lock_days 0-365")
    if not check.is_click_param(merchant.click_param):
        raise InvalidMerchant("click_param must be 1-64 URL-safe chars")
    domains = sorted({d.strip().lower().rstrip(".") for d in merchant.domains})
    if not domains or not all(check.is_host(d) for d in domains):
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
        if not check.is_id(merchant_id):
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
        """Make a new active secret; the previously active ones expire `grace_ms` from now. Returns the new
        secret and the old ones' expiry (0 if there were none). Expired secrets are pruned."""
        key = self._keys.merchant_secrets(merchant_id)
        current = await self._redis.hgetall(key)
        secret = new_secret()
        expire_at = now_ms + grace_ms
        updates: dict[str, int] = {secret: 0}
        stale = []
        had_active = False
        for raw_secret, raw_expiry in current.items():
            expiry = int(raw_expiry)
            if expiry == 0:
                updates[raw_secret.decode()] = expire_at
                had_active = True
            elif expiry <= now_ms:
                stale.append(raw_secret)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=updates)
            if stale:
                pipe.hdel(key, *stale)
            await pipe.execute()
        return secret, (expire_at if had_active else 0)

    async def active_secrets(self, merchant_id: str, now_ms: int) -> list[str]:
        found = await self._redis.hgetall(self._keys.merchant_secrets(merchant_id))
        return [s.decode() for s, e in found.items() if int(e) == 0 or int(e) > now_ms]


def public_view(merchant: Merchant) -> dict:
    return orjson.loads(msgspec.json.encode(merchant))
