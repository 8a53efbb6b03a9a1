"""Bearer-token authentication: the operator's admin token, and API keys the admin issues, each scoped
to exactly one creator or one merchant. A key is shown once; Redis keeps only its SHA-256, which is also
the key's id: what the admin lists per creator or merchant and revokes (a revoked key fails its next
request, since every request reads the key's record)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from starlette.requests import Request

from core import validate
from core.errors import REDIS_TRANSIENT, ApiError
from core.keys import Keys
from redirector.throttle import CredentialThrottle

KEY_PREFIX = "ctk_"
KEY_RANDOM_BYTES = 32
SCOPES = ("creator", "merchant")
FORWARDED = "x-forwarded-for"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "admin", "creator" or "merchant"
    subject_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ApiError(403, "forbidden", "this call needs the admin token")

    def require_creator(self, creator_id: str) -> None:
        """Admin, or the key of this very creator."""
        if not (self.is_admin or (self.kind == "creator" and self.subject_id == creator_id)):
            raise ApiError(403, "forbidden", f"this key may not act for creator {creator_id!r}")

    def require_merchant(self, merchant_id: str) -> None:
        """Admin, or the key of this very merchant."""
        if not (self.is_admin or (self.kind == "merchant" and self.subject_id == merchant_id)):
            raise ApiError(403, "forbidden", f"this key may not act for merchant {merchant_id!r}")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An issued key as stored: never the key itself, only its id (`key_digest`)."""

    id: str
    scope: str  # "creator" or "merchant"
    subject_id: str
    created_at_ms: int


def _key_record(key_id: str, fields: dict[bytes, bytes]) -> KeyRecord | None:
    """The stored record, or None when it is not one `issue` wrote (a record edited by hand): such a
    record authenticates nothing and is listed nowhere."""
    scope = fields.get(b"scope", b"").decode(errors="replace")
    subject_id = fields.get(b"subject_id", b"").decode(errors="replace")
    if scope not in SCOPES or not validate.is_id(subject_id):
        return None
    created = fields.get(b"created_at_ms", b"")
    return KeyRecord(
        key_id, scope, subject_id, int(created) if created.isdigit() and len(created) < 19 else 0
    )


async def live_key(redis: Redis, keys: Keys, key_id: str) -> KeyRecord | None:
    """The key with this id if it can be used: the one check behind API calls and dashboard sessions."""
    return _key_record(key_id, await redis.hgetall(keys.api_key(key_id)))


async def reindex_keys(redis: Redis, keys: Keys) -> int:
    """Put every stored key on its subject's list (`clicktrail keys reindex`: keys issued by a release
    before the lists are on none); returns how many were added. Safe to run again and while keys are
    issued or revoked: a key revoked meanwhile may be put back on a list, which the next listing takes
    off (it has no record)."""
    added = 0
    start = len(keys.api_key("").encode())  # names come back as bytes
    async for name in redis.scan_iter(match=keys.api_key_pattern(), count=1_000):
        key_id = name[start:].decode(errors="replace")
        record = _key_record(key_id, await redis.hgetall(name)) if validate.is_key_id(key_id) else None
        if record is not None:
            added += await redis.sadd(keys.api_keys_of(record.scope, record.subject_id), key_id)
    return added


# Refusals of credentials by reason (`Authenticator.refusals`, exported as clicktrail_auth_refusals_total).
REFUSAL_REASONS = ("missing", "invalid", "throttled")


class Authenticator:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        admin_token: str | None,
        throttle: CredentialThrottle,
        refusals: Counter,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._admin_token = admin_token.encode() if admin_token else None
        self._throttle = throttle
        self.refusals = refusals
        for reason in REFUSAL_REASONS:  # every series exported from the start, at 0, for rates and alerts
            refusals.labels(reason)

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.refusals.labels("missing").inc()
            raise ApiError(401, "unauthorized", "missing bearer token")
        return await self.checked(token, request)

    async def checked(self, token: str, request: Request) -> Principal:
        """Whose token this is (401 for none of ours), for a request. A token that is not an API key is an
        attempt at the admin token, limited per client address (redirector/throttle.py): 429 with
        Retry-After past the limit. 503 while Redis cannot be reached (the key's record and the count live
        there)."""
        try:
            if token.startswith(KEY_PREFIX):
                return await self._api_key(token)
            return await self._admin_attempt(token, request)
        except REDIS_TRANSIENT:  # another refusal (a key of the wrong type) is the API's named 500
            message = "credentials cannot be checked now (Redis cannot be reached); retry"
            raise ApiError(503, "redis_unavailable", message, {"retry-after": "1"}) from None

    async def _admin_attempt(self, token: str, request: Request) -> Principal:
        throttle = self._throttle
        peer = request.client.host if request.client else ""
        client = throttle.client(peer, ",".join(request.headers.getlist(FORWARDED)))
        try:
            principal = self._admin(token)
        except ApiError:
            wait_s = await throttle.refused(client)
            if not wait_s:
                self.refusals.labels("invalid").inc()
                raise
        else:
            wait_s = await throttle.wait_s(client)
            if not wait_s:
                return principal
        self.refusals.labels("throttled").inc()
        raise ApiError(
            429,
            "too_many_failures",
            f"too many attempts at the admin token from this address; retry in {wait_s} s",
            {"retry-after": str(wait_s)},
        )

    def _admin(self, token: str) -> Principal:
        if self._admin_token is None:
            raise ApiError(
                401, "unauthorized", "the admin API is disabled until CLICKTRAIL_ADMIN_TOKEN is set"
            )
        if hmac.compare_digest(token.encode(), self._admin_token):
            return Principal("admin")
        raise ApiError(401, "unauthorized", "invalid token")

    async def _api_key(self, token: str) -> Principal:
        record = await live_key(self._redis, self._keys, key_digest(token))
        if record is None:
            self.refusals.labels("invalid").inc()
            raise ApiError(401, "unauthorized", "invalid API key")
        return Principal(record.scope, record.subject_id)

    async def issue(self, scope: str, subject_id: str, now_ms: int) -> str:
        """Create a key for one creator or merchant; the caller shows it once."""
        assert scope in SCOPES
        key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
        key_id = key_digest(key)
        # With its subject's index in one transaction (one slot on a cluster: core/keys.py), so that no
        # usable key is missing from its subject's list.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.api_key(key_id),
                mapping={"scope": scope, "subject_id": subject_id, "created_at_ms": now_ms},
            )
            pipe.sadd(self._keys.api_keys_of(scope, subject_id), key_id)
            await pipe.execute()
        return key

    async def keys_of(self, scope: str, subject_id: str) -> list[KeyRecord]:
        """The live keys of one creator or merchant, oldest first. Keys issued by a release before the
        per-subject lists are listed once `clicktrail keys reindex` has run (`reindex_keys`)."""
        assert scope in SCOPES
        index = self._keys.api_keys_of(scope, subject_id)
        members = sorted(await self._redis.smembers(index))
        if not members:
            return []
        key_ids = [m.decode(errors="replace") for m in members]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hgetall(self._keys.api_key(key_id))
            stored = await pipe.execute()
        found, stale = [], []
        for member, key_id, fields in zip(members, key_ids, stored, strict=True):
            record = _key_record(key_id, fields) if validate.is_key_id(key_id) else None
            if record is not None and (record.scope, record.subject_id) == (scope, subject_id):
                found.append(record)
                continue
            # Only a hand edit puts such an entry here: no record, an unusable one (it authenticates
            # nothing), or another subject's key, which moves to its own list so that it stays revocable.
            stale.append(member)
            if record is not None:
                await self._redis.sadd(self._keys.api_keys_of(record.scope, record.subject_id), key_id)
        if stale:
            await self._redis.srem(index, *stale)
        return sorted(found, key=lambda r: (r.created_at_ms, r.id))

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Delete a key (its next request answers 401) and take it off its subject's list; None when no
        key has this id (never issued, revoked already, or a record edited by hand, which is deleted)."""
        assert validate.is_key_id(key_id)
        fields = await self._redis.hgetall(self._keys.api_key(key_id))
        if not fields:
            return None
        record = _key_record(key_id, fields)
        if record is None:  # edited by hand: it authenticates nothing already; removed, and answered as gone
            await self._redis.delete(self._keys.api_key(key_id))
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.api_key(key_id))
            pipe.srem(self._keys.api_keys_of(record.scope, record.subject_id), key_id)
            deleted, _ = await pipe.execute()
        # Two revocations at once: the one whose DEL found the key reports it.
        return record if deleted else None
