"""Dashboard sign-in: an API key (or the admin token) typed once is turned into a session cookie. Redis
keeps the session under the SHA-256 of the cookie's value with a TTL (`dash_session_ttl_s`); the key
itself is never stored. Sign-out deletes the session, so a copied cookie stops working at once.

A session lasts no longer than the credential that opened it: it records the API key's SHA-256 (the
address of the key's record, not the key) or a fingerprint of the admin token, and every request checks
that the key is still usable for the same subject (the API's check, `auth.live_key`), or that the admin
token is still the one configured. Revoking a key or rotating CLICKTRAIL_ADMIN_TOKEN ends its sessions at
their next request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from core import validate
from core.keys import Keys
from redirector.auth import KEY_PREFIX, Principal, key_digest, live_key

COOKIE = "ct_dash"
# The sign-in form's own CSRF token lives in a short cookie of its own (double submit): there is no
# session yet to keep it in.
LOGIN_COOKIE = "ct_dash_login"
LOGIN_COOKIE_TTL_S = 3_600
SESSION_BYTES = 32
CSRF_BYTES = 32
# A cookie value longer than this is not one of ours: refused before hashing or asking Redis.
MAX_COOKIE_CHARS = 128
PATH = "/dash"


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    cookie: str  # the cookie's value: sign-out needs it


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def admin_fingerprint(admin_token: str | None) -> str:
    """Names the admin token without revealing it: an HMAC keyed by the token, so a read of Redis gives
    nothing to guess a weak token from offline ("" when no token is configured)."""
    if not admin_token:
        return ""
    return hmac.new(admin_token.encode(), b"clicktrail dash session", hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int, admin_token: str | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl_s = ttl_s
        self._admin = admin_fingerprint(admin_token)

    def _credential(self, token: str) -> str:
        return key_digest(token) if token.startswith(KEY_PREFIX) else self._admin

    async def open(self, principal: Principal, token: str) -> Session:
        """A session for `principal`, who signed in with `token` (an API key or the admin token)."""
        cookie = secrets.token_urlsafe(SESSION_BYTES)
        session = Session(principal, secrets.token_urlsafe(CSRF_BYTES), cookie)
        key = self._keys.dash_session(_digest(cookie))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "kind": principal.kind,
                    "subject_id": principal.subject_id or "",
                    "csrf": session.csrf,
                    "credential": self._credential(token),
                    "created_ms": int(time.time() * 1000),
                },
            )
            pipe.expire(key, self.ttl_s)
            await pipe.execute()
        return session

    async def find(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        record = await self._redis.hgetall(self._keys.dash_session(_digest(cookie)))
        if not record or not await self._still_valid(record):
            return None
        subject = record[b"subject_id"].decode() or None
        return Session(Principal(record[b"kind"].decode(), subject), record[b"csrf"].decode(), cookie)

    async def _still_valid(self, record: dict[bytes, bytes]) -> bool:
        credential = record.get(b"credential", b"").decode()
        if record[b"kind"] == b"admin":
            return bool(self._admin) and hmac.compare_digest(credential, self._admin)
        # The key's record lives in another hash slot than the session's: a second call, not a pipeline.
        # The API's own check: a revoked key, or a record edited into another subject's or an unusable
        # one, ends the session.
        key = await live_key(self._redis, self._keys, credential) if validate.is_key_id(credential) else None
        return key is not None and (key.scope, key.subject_id) == (
            record[b"kind"].decode(),
            record[b"subject_id"].decode(),
        )

    async def close(self, session: Session) -> None:
        await self._redis.delete(self._keys.dash_session(_digest(session.cookie)))


def is_secure(request: Request, public_url: str) -> bool:
    """Secure cookies when the dashboard is reached over https, directly or behind the public URL."""
    return request.url.scheme == "https" or public_url.lower().startswith("https://")


def set_cookie(response: Response, name: str, value: str, max_age_s: int, secure: bool) -> None:
    response.set_cookie(
        name, value, max_age=max_age_s, path=PATH, secure=secure, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str, secure: bool) -> None:
    response.delete_cookie(name, path=PATH, secure=secure, httponly=True, samesite="strict")
