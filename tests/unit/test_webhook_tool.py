"""`clicktrail webhook verify`'s diagnosis, one case per mistake a sender makes; signatures made with the
official `standardwebhooks` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from attribution.webhook_tool import diagnose, parse_headers, split_request

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
NOW_S = 1_800_000_000
BODY = b'{"type": "order.created", "data": {"order_id": "A-1"}}\n'


def headers(body: bytes = BODY, at_s: int = NOW_S, msg_id: str = "msg_1", **override) -> dict[str, str]:
    signature = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(at_s, UTC), body.decode())
    found = {"webhook-id": msg_id, "webhook-timestamp": str(at_s), "webhook-signature": signature}
    found.update({k.replace("_", "-"): v for k, v in override.items()})
    return {k: v for k, v in found.items() if v is not None}


def raw_mac(key: bytes, content: bytes) -> str:
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(
    ("body", "hdrs", "expected"),
    [
        (BODY, headers(), []),
        (BODY, headers(webhook_id=None), ["missing header webhook-id"]),
        (BODY, headers(webhook_signature=None), ["missing header webhook-signature"]),
        (BODY, headers(webhook_timestamp="2026-11-27T10:00:00Z"), ["not whole seconds since 1970"]),
        (BODY, headers(webhook_timestamp="١٢٣"), ["not whole seconds since 1970"]),
        (BODY, headers(at_s=NOW_S - 420), ["stale: 420 s old, 120 s past the 300 s tolerance"]),
        (BODY, headers(at_s=NOW_S + 900), ["900 s in the future, 600 s past"]),
        (BODY, headers(webhook_timestamp=str(NOW_S * 1000)), ["looks like milliseconds"]),
        (BODY, headers(webhook_signature="v1,!!!"), ["not valid base64", "no signature matches"]),
        (BODY, headers(webhook_signature="v2," + "A" * 44), ["is not v1", "no signature matches"]),
        (BODY, headers(webhook_signature="sha256=abc"), ["not of the form v1,<base64>"]),
        (BODY, headers(webhook_signature="v1,AAAA"), ["decodes to 3 bytes", "no signature matches"]),
        (BODY.rstrip(), headers(), ["body was modified: it lost a trailing newline"]),
        (BODY + b"\n", headers(), ["body was modified: a trailing newline was added"]),
        (
            b'{"type":"order.created","data":{"order_id":"A-1"}}',
            headers(body=BODY.rstrip()),
            ["re-serialised after signing (signed as JSON with spaces)"],
        ),
        (
            BODY,
            headers(webhook_signature=raw_mac(SECRET.encode(), b"msg_1.%d." % NOW_S + BODY)),
            ["secret's text"],
        ),
        (BODY, headers(webhook_signature=raw_mac(b"k" * 24, BODY)), ["HMAC of the body alone"]),
        (BODY, headers(msg_id="msg_2", webhook_id="msg_3"), ["no signature matches"]),
        # signed as they stand: the id's characters are the one problem
        *(
            (BODY, headers(msg_id=bad), [f"webhook-id {bad!r}: webhook-id must be printable ASCII"])
            for bad in ("msg\x00", "msg\x85", "msg\u2028", "msg_\xe9", "msg_1 ")
        ),
    ],
)
def test_diagnosis(body, hdrs, expected):
    problems = " | ".join(diagnose(body, hdrs, SECRET, NOW_S))
    if not expected:
        assert problems == ""
    for fragment in expected:
        assert fragment in problems


def test_a_bad_secret_is_said_first():
    assert diagnose(BODY, headers(), "whsec_%%%", NOW_S) == ["the secret is not of the form whsec_<base64>"]


def test_rotation_lists_several_signatures():
    valid = headers()["webhook-signature"]
    assert diagnose(BODY, headers(webhook_signature="v1,AAAA " + valid), SECRET, NOW_S) == [
        "signature decodes to 3 bytes, an HMAC-SHA256 has 32"
    ]


def test_captured_requests_are_read():
    raw = (
        b"POST /webhooks/orders/brand1 HTTP/1.1\r\nHost: x\r\nWebhook-Id: msg_1\r\n"
        b"webhook-timestamp: 5\r\n\r\n" + BODY
    )
    found, body = split_request(raw)
    assert found == {"host": "x", "webhook-id": "msg_1", "webhook-timestamp": "5"} and body == BODY
    assert parse_headers("HTTP/1.1 200 OK\nA: b: c\n") == {"a": "b: c"}
