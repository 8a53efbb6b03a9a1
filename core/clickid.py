"""Click ids: unique, URL-safe, 30 characters, carrying their millisecond timestamp and a keyed MAC.

Layout (22 bytes, base64url without padding → 30 characters):

    ms timestamp (6 bytes, big endian) | process nonce (4) | counter (4) | MAC (8)

The nonce is random per process and the counter increments per click, so two workers collide only if
they draw the same 32-bit nonce in the same millisecond and reach the same counter value. The MAC is a
keyed BLAKE2b over the first 14 bytes: a forged or altered id fails `verify()`. The timestamp lets a
join bound its scan of the clicks table by time (`timestamp_ms()`), without trusting the id until
`verify()` says so.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import os

from core import clock

ID_BYTES = 22
ID_CHARS = 30
MAC_BYTES = 8
_BODY_BYTES = ID_BYTES - MAC_BYTES
_COUNTER_MOD = 1 << 32
_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Undoes _URLSAFE; a "+" or "/" in an id becomes the other and fails the spelling check.
_STANDARD = bytes.maketrans(b"-_+/", b"+/-_")


class ClickIds:
    """Mints and checks click ids under one secret. One instance per process, made at start-up."""

    __slots__ = ("_counter", "_key", "_mac", "_nonce")

    def __init__(self, secret: bytes) -> None:
        # Derive a sub-key so the click-id MAC and the IP hash never share a key.
        self._key = hashlib.blake2b(secret, digest_size=32, person=b"ct-clickid").digest()
        self._mac = hashlib.blake2b(key=self._key, digest_size=MAC_BYTES)
        self._nonce = os.urandom(4)
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def new(self, now_ms: int | None = None) -> str:
        ms = clock.now_ms() if now_ms is None else now_ms
        body = ms.to_bytes(6, "big") + self._nonce + (next(self._counter) % _COUNTER_MOD).to_bytes(4, "big")
        mac = self._mac.copy()  # a copy of the keyed state: cheaper than keying a new hash per click
        mac.update(body)
        # 22 bytes are 30 base64 characters and "==": the same as urlsafe_b64encode(...).rstrip(b"="),
        # without its Python-level steps (one id per redirect).
        return binascii.b2a_base64(body + mac.digest(), newline=False)[:ID_CHARS].translate(_URLSAFE).decode()

    def verify(self, click_id: str) -> bool:
        raw = decode(click_id)
        if raw is None:
            return False
        expected = hashlib.blake2b(raw[:_BODY_BYTES], key=self._key, digest_size=MAC_BYTES).digest()
        return hmac.compare_digest(expected, raw[_BODY_BYTES:])


def decode(click_id: str) -> bytes | None:
    """The raw 22 bytes of a well-formed id, or None (wrong length or alphabet, or not the one spelling
    that encodes its bytes: the last character's 4 spare bits are zero)."""
    if not isinstance(click_id, str) or len(click_id) != ID_CHARS:
        return None
    # binascii directly, not base64.urlsafe_b64decode's Python-level steps: the attributor decodes
    # every order's id (a tenth of a run's CPU went to base64's wrappers).
    try:
        text = click_id.encode("ascii")
        raw = binascii.a2b_base64(text.translate(_STANDARD) + b"==")
    except (binascii.Error, ValueError):  # ValueError: UnicodeEncodeError, a non-ASCII character
        return None
    if binascii.b2a_base64(raw, newline=False)[:ID_CHARS].translate(_URLSAFE) != text:
        return None
    return raw


def timestamp_ms(click_id: str) -> int | None:
    """The millisecond timestamp embedded in a well-formed id (not verified: call `verify` for that)."""
    raw = decode(click_id)
    return None if raw is None else int.from_bytes(raw[:6], "big")
