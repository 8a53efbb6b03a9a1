"""`clicktrail webhook send` and `clicktrail webhook verify`: the merchant's tools for integrating order
webhooks. `diagnose` is pure: given a captured request and the secret it says exactly what is wrong
(missing header, bad timestamp format, stale timestamp by how much, a malformed signature, no matching
signature and the likely cause: the body changed after signing, the key used undecoded, ...)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time

from attribution import webhooks
from core import validate

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAC_BYTES = 32  # HMAC-SHA256
MILLISECONDS_DIGITS = 13  # a time since 2001 in milliseconds; in seconds that is the year 33658


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (curl -D, a proxy log, an HTTP head); a request or status line is skipped."""
    headers = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


def split_request(raw: bytes) -> tuple[dict[str, str], bytes]:
    """A whole captured request (head, blank line, body) into its headers and body."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, body = raw.partition(separator)
        if sep:
            return parse_headers(head.decode("latin-1")), body
    return {}, raw


def _mac(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def _offered(signatures: str, problems: list[str]) -> list[bytes]:
    offered = []
    for part in signatures.split(" "):
        if not part:
            continue
        version, sep, value = part.partition(",")
        if not sep:
            problems.append(f"signature {part[:40]!r} is not of the form v1,<base64>")
        elif version != "v1":
            problems.append(f"signature version {version[:10]!r} is not v1 (only v1, HMAC-SHA256, is read)")
        else:
            try:
                mac = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"signature {value[:40]!r} is not valid base64")
                continue
            if len(mac) != MAC_BYTES:
                problems.append(f"signature decodes to {len(mac)} bytes, an HMAC-SHA256 has {MAC_BYTES}")
            offered.append(mac)
    return offered


def _likely_cause(key: bytes, secret: str, webhook_id: str, timestamp: str, body: bytes, offered) -> str:
    """Which common mistake reproduces one of the offered signatures."""

    def matches(k: bytes, content: bytes) -> bool:
        return any(hmac.compare_digest(_mac(k, content), mac) for mac in offered)

    prefix = f"{webhook_id}.{timestamp}.".encode()
    if matches(secret.encode(), prefix + body) or matches(
        secret.removeprefix("whsec_").encode(), prefix + body
    ):
        return "it was made with the secret's text as the key: base64-decode the part after whsec_ first"
    if matches(key, body):
        return 'it is an HMAC of the body alone: sign "{webhook-id}.{webhook-timestamp}.{body}"'
    # What the body went through between signing and us, if the signed bytes are one of these.
    signed_as = {
        "a trailing newline was added after signing": body.removesuffix(b"\n"),
        "it lost a trailing newline after signing": body + b"\n",
    }
    try:
        parsed = json.loads(body)
        signed_as["it was re-serialised after signing (signed as compact JSON)"] = json.dumps(
            parsed, separators=(",", ":")
        ).encode()
        signed_as["it was re-serialised after signing (signed as JSON with spaces)"] = json.dumps(
            parsed
        ).encode()
    except ValueError:
        pass
    for what, variant in signed_as.items():
        if variant != body and matches(key, prefix + variant):
            return f"the body was modified: {what}"
    return "the body, webhook-id or timestamp differ from what was signed, or another secret was used"


def diagnose(body: bytes, headers: dict[str, str], secret: str, now_s: int) -> list[str]:
    """Every problem found, in the order the server checks; empty when the server would accept the
    signature (the body schema is checked separately)."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return ["the secret is not of the form whsec_<base64>"]
    headers = {k.lower(): v for k, v in headers.items()}
    problems = [f"missing header {name}" for name in HEADERS if not headers.get(name)]
    if problems:
        return problems
    webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if len(webhook_id) > webhooks.MAX_WEBHOOK_ID_CHARS:
        return [f"webhook-id is {len(webhook_id)} characters, at most {webhooks.MAX_WEBHOOK_ID_CHARS}"]
    if not validate.is_webhook_id(webhook_id):
        return [f"webhook-id {webhook_id[:40]!r}: {webhooks.WEBHOOK_ID_RULE}"]
    if timestamp.isascii() and timestamp.isdigit() and len(timestamp) >= MILLISECONDS_DIGITS:
        return [f"webhook-timestamp {timestamp[:40]!r} looks like milliseconds: send whole seconds"]
    timestamp_s = validate.timestamp_s(timestamp)
    if timestamp_s is None:
        return [f"webhook-timestamp {timestamp[:40]!r} is not whole seconds since 1970 in ASCII digits"]
    age_s = now_s - timestamp_s
    if age_s > webhooks.TOLERANCE_S:
        problems.append(
            f"webhook-timestamp is stale: {age_s} s old, {age_s - webhooks.TOLERANCE_S} s past the "
            f"{webhooks.TOLERANCE_S} s tolerance (sign when sending; check the sender's clock)"
        )
    elif -age_s > webhooks.TOLERANCE_S:
        problems.append(
            f"webhook-timestamp is {-age_s} s in the future, {-age_s - webhooks.TOLERANCE_S} s past the "
            f"{webhooks.TOLERANCE_S} s tolerance (check the sender's clock)"
        )
    offered = _offered(headers["webhook-signature"], problems)
    expected = _mac(key, f"{webhook_id}.{timestamp}.".encode() + body)
    if not any(hmac.compare_digest(expected, mac) for mac in offered):
        cause = _likely_cause(key, secret, webhook_id, timestamp, body, offered)
        problems.append(f"no signature matches this secret: {cause}")
    return problems


def signed_request(secret: str, body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    """Headers for a fresh delivery of `body`."""
    webhook_id = webhook_id or "msg_" + secrets.token_hex(12)
    now_s = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(now_s),
        "webhook-signature": webhooks.sign(secret, webhook_id, now_s, body),
    }
