"""Order webhooks against the real app and Redis, signed with the official `standardwebhooks` package:
acceptance, idempotency under concurrency, rotation, and one test per refusal (nothing stored on any)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from standardwebhooks import Webhook

from attribution import webhooks
from tests.integration.apphelp import ADMIN, running_app

pytestmark = pytest.mark.redis

MERCHANT = {
    "merchant_id": "brand1",
    "name": "Brand One",
    "domains": ["shop.brand1.example"],
    "currency": "EUR",
    "default_rate_bps": 800,
}
BODY = json.dumps(
    {
        "type": "order.created",
        "data": {
            "order_id": "A-1001",
            "click_id": "x" * 30,
            "currency": "EUR",
            "occurred_at": "2026-11-27T10:00:00Z",
            "items": [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}],
        },
    }
).encode()


def signed(secret: str, body: bytes, msg_id: str = "msg_1", at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def stream_len(settings, client: redis.Redis) -> int:
    return client.xlen(settings.redis_prefix + "orders")


def metric(body: str, result: str) -> float:
    for line in body.splitlines():
        if line.startswith(f'clicktrail_webhooks_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def make_merchant(client) -> str:
    response = await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)
    assert response.status_code == 201, response.text
    secret = response.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    return secret


def test_accepts_once_and_same_id_again_is_200(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1"
            first = await client.post(url, content=BODY, headers=signed(secret, BODY))
            assert first.status_code == 202, first.text
            # a retry carries a new timestamp and signature over the same body
            again = await client.post(url, content=BODY, headers=signed(secret, BODY, at=datetime.now(UTC)))
            assert again.status_code == 200
            assert stream_len(settings, redis_client) == 1
            # 50 identical deliveries, 25 of them at once: still one event
            await asyncio.gather(
                *[client.post(url, content=BODY, headers=signed(secret, BODY)) for _ in range(25)]
            )
            for _ in range(25):
                assert (await client.post(url, content=BODY, headers=signed(secret, BODY))).status_code == 200
            assert stream_len(settings, redis_client) == 1
            other = BODY.replace(b"A-1001", b"A-1002")
            conflict = await client.post(url, content=other, headers=signed(secret, other))
            assert conflict.status_code == 409
            assert conflict.json()["error"]["code"] == "webhook_id_reused"
            assert stream_len(settings, redis_client) == 1
            text = (await client.get("/metrics")).text
            assert (
                metric(text, "accepted") == 1
                and metric(text, "duplicate") == 51
                and metric(text, "conflict") == 1
            )
            # the idempotency record lasts days, not seconds
            ttl_ms = redis_client.pttl(settings.redis_prefix + "webhook:brand1:msg_1")
            assert ttl_ms > 6 * 86_400_000

    asyncio.run(scenario())


def _refusals(secret: str) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    now = datetime.now(UTC)
    good = signed(secret, BODY)
    flipped = bytearray(BODY)
    flipped[40] ^= 0x01
    reserialised = json.dumps(json.loads(BODY), indent=1).encode()
    wrong = Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    wrong_headers = {**good, "webhook-signature": wrong.sign("msg_1", now, BODY.decode())}
    oversize = b"{" + b" " * (webhooks.MAX_BODY_BYTES + 10) + b"}"
    # Signed, then refused as `malformed` (400): each a part of the body replaced.
    malformed = {
        "malformed_json": (b"}]}}", b""),  # the body cut short
        "bad_schema": (b'"order.created"', b'"order.shipped"'),
        "negative_price": (b"5990", b"-5990"),
        # A key given twice: parsers disagree on which copy counts (core/repeats.py), at any depth.
        "type_twice": (b'"type": "order.created"', b'"type": "order.refunded", "type": "order.created"'),
        "order_id_twice": (b'"order_id": "A-1001"', b'"order_id": "A-1001", "order_id": "A-9"'),
        "item_price_twice": (b'"unit_price_minor": 5990', b'"unit_price_minor": 1, "unit_price_minor": 5990'),
        # An order id, SKU or category a trace, review or page could not name (core/validate.py).
        "order_id_control": (b'"A-1001"', b'"A-1001\\u0000\\n"'),
        "order_id_separator": (b'"A-1001"', b'"A\\u20281001"'),
        "sku_control": (b'"SKU-1"', b'"SKU\\u007f1"'),
        "category_separator": (b'"shoes"', b'"sho\\u2029es"'),
        # A payout's pseudo order (`payout:<id>`): read as this order's ledger, its transfers were reversed.
        "payout_order_id": (b'"A-1001"', b'"payout:brand1.0123abcd"'),
    }
    bodies = {name: BODY.replace(*change) for name, change in malformed.items()}
    assert BODY not in bodies.values() and len(set(bodies.values())) == len(bodies)
    cases = [
        ("flipped_byte", bytes(flipped), good, 401, "bad_signature"),
        ("reserialised", reserialised, good, 401, "bad_signature"),
        ("wrong_secret", BODY, wrong_headers, 401, "bad_signature"),
        # A minute past the 5-minute window: `now` is taken once, and a loaded machine may take seconds to
        # reach these cases (the boundary itself is in the unit tests, tests/unit/test_webhook_rules.py).
        ("stale", BODY, signed(secret, BODY, at=now - timedelta(seconds=360)), 401, "stale_timestamp"),
        ("future", BODY, signed(secret, BODY, at=now + timedelta(seconds=360)), 401, "future_timestamp"),
        ("oversize", oversize, signed(secret, oversize), 413, "too_large"),
        *((name, body, signed(secret, body), 400, "malformed") for name, body in bodies.items()),
    ]
    # Signed, then refused as dated ahead of our clock by more than 5 minutes (400 occurred_in_future).
    stamp = "%Y-%m-%dT%H:%M:%S"
    ahead = {
        "ten_minutes": (now + timedelta(minutes=10)).strftime(stamp) + "Z",
        "a_day": (now + timedelta(days=1)).strftime(stamp) + ".5Z",
        "year_2100": "2100-01-01T00:00:00Z",
        "by_its_offset": now.strftime(stamp) + "-05:00",  # our wall time, five hours west: 5 h ahead
    }
    for name, at in ahead.items():
        body = BODY.replace(b"2026-11-27T10:00:00Z", at.encode())
        cases.append((f"occurred_{name}", body, signed(secret, body), 400, "occurred_in_future"))
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        cases.append(
            (f"no_{header}", BODY, {k: v for k, v in good.items() if k != header}, 401, "missing_headers")
        )
    return cases


def test_each_refusal_stores_nothing_and_is_counted(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            for name, body, headers, status, reason in _refusals(secret):
                before = metric((await client.get("/metrics")).text, reason)
                response = await client.post("/webhooks/orders/brand1", content=body, headers=headers)
                assert response.status_code == status, (name, response.text)
                assert "error" in response.json(), name
                assert metric((await client.get("/metrics")).text, reason) == before + 1, name
            unknown = await client.post("/webhooks/orders/nobody", content=BODY, headers=signed(secret, BODY))
            assert unknown.status_code == 404
            assert metric((await client.get("/metrics")).text, "unknown_merchant") == 1
            assert stream_len(settings, redis_client) == 0
            assert not redis_client.keys(settings.redis_prefix + "webhook:*")

    asyncio.run(scenario())


def test_an_order_dated_within_the_clock_tolerance_is_accepted(settings, redis_client) -> None:
    """A sender's clock a little ahead of ours (the signature's own 5 minutes) is no refusal."""

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            for n, ahead in enumerate((timedelta(0), timedelta(minutes=2), timedelta(minutes=4))):
                at = (datetime.now(UTC) + ahead).strftime("%Y-%m-%dT%H:%M:%SZ")
                body = BODY.replace(b"2026-11-27T10:00:00Z", at.encode()).replace(
                    b"A-1001", f"A-{n}".encode()
                )
                response = await client.post(
                    "/webhooks/orders/brand1", content=body, headers=signed(secret, body, msg_id=f"ahead-{n}")
                )
                assert response.status_code == 202, response.text
            assert stream_len(settings, redis_client) == 3

    asyncio.run(scenario())


# What a sender puts on the wire: Latin-1 bytes, or UTF-8 past U+00FF (the server reads Latin-1 either way).
BAD_WIRE_IDS = [
    b"msg\x00",
    b"msg_1\n",
    b"msg\x1b[31m",
    b"msg\x7f",
    b"msg\x85",
    b"msg_\xe9",
    b"msg_\xa0",
    "msg\u2028".encode(),
    "msg_\U0001f600".encode(),
    b" msg_1",
    b"msg_1 ",
    b" ",
]


def test_a_webhook_id_the_rule_refuses_stores_nothing_and_is_shown_escaped(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1"
            for wire in BAD_WIRE_IDS:
                read_as = wire.decode("latin-1")
                # Signed over the id as the server reads it: only the id's rule refuses it.
                headers = {**signed(secret, BODY, read_as), "webhook-id": wire}
                before = metric((await client.get("/metrics")).text, "bad_webhook_id")
                response = await client.post(url, content=BODY, headers=headers)
                assert response.status_code == 401, (wire, response.text)
                error = response.json()["error"]
                assert error["code"] == "bad_webhook_id" and "printable ASCII" in error["message"], wire
                assert metric((await client.get("/metrics")).text, "bad_webhook_id") == before + 1, wire
            assert stream_len(settings, redis_client) == 0
            assert not redis_client.keys(settings.redis_prefix + "webhook:*")
            listed = await client.get("/api/merchants/brand1/deliveries?limit=200", headers=ADMIN)
            deliveries = listed.json()["deliveries"][::-1]
            assert [d["reason"] for d in deliveries] == ["bad_webhook_id"] * len(BAD_WIRE_IDS)
            shown = [d["webhook_id"] for d in deliveries]
            assert all(i.isascii() and i.isprintable() and " " not in i for i in shown), shown
            assert shown[:2] == ["msg\\x00", "msg_1\\n"] and shown[-1] == "\\x20"

    asyncio.run(scenario())


def test_rotation_keeps_both_secrets_until_the_old_one_expires(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            old = await make_merchant(client)
            rotated = await client.post("/api/merchants/brand1/secrets", headers=ADMIN)
            assert rotated.status_code == 201
            new = rotated.json()["webhook_secret"]
            assert new != old and rotated.json()["previous_secrets_expire_at_ms"] > time.time() * 1000
            for n, secret in enumerate((old, new)):
                body = BODY.replace(b"A-1001", f"A-{n}".encode())
                response = await client.post(
                    "/webhooks/orders/brand1", content=body, headers=signed(secret, body, msg_id=f"rot-{n}")
                )
                assert response.status_code == 202, response.text
            # both listed, as a sender does during rotation
            both = signed(old, BODY, msg_id="rot-2")
            both["webhook-signature"] += " " + signed(new, BODY, msg_id="rot-2")["webhook-signature"]
            assert (
                await client.post("/webhooks/orders/brand1", content=BODY, headers=both)
            ).status_code == 202
        # past the grace period only the new secret verifies
        from redis.asyncio import Redis

        from attribution.merchants import MerchantStore
        from core.keys import Keys

        async_redis = Redis.from_url(settings.redis_url)
        store = MerchantStore(async_redis, Keys(settings.redis_prefix))
        later_ms = rotated.json()["previous_secrets_expire_at_ms"] + 1
        assert await store.active_secrets("brand1", later_ms) == [new]
        signed_old = signed(old, BODY, msg_id="late")
        assert webhooks.verify(BODY, signed_old, [new], int(time.time())) == "bad_signature"
        await async_redis.aclose()

    asyncio.run(scenario())


def test_signed_body_that_is_not_utf8_is_a_400(settings, redis_client) -> None:
    """Signed correctly but not text: the schema check refuses it, nothing is stored, no 500."""
    import base64
    import hashlib
    import hmac

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            body = b'{"type": "order.created", "data": {"\xff": 1}}'
            stamp = str(int(datetime.now(UTC).timestamp()))
            key = base64.b64decode(secret.removeprefix("whsec_"))
            mac = hmac.new(key, b"msg_bin." + stamp.encode() + b"." + body, hashlib.sha256).digest()
            headers = {
                "webhook-id": "msg_bin",
                "webhook-timestamp": stamp,
                "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            }
            response = await client.post("/webhooks/orders/brand1", content=body, headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "malformed"
            assert stream_len(settings, redis_client) == 0

    asyncio.run(scenario())


def _with_items(items: list[tuple[int, int]], kind: str = "order.created", order_id: str = "A-1001") -> bytes:
    body = json.loads(BODY)
    body["type"] = kind
    body["data"]["order_id"] = order_id
    body["data"]["items"] = [
        {"sku": f"S{i}", "unit_price_minor": p, "quantity": q} for i, (p, q) in enumerate(items)
    ]
    return json.dumps(body).encode()


OVER_BOUND = [
    ("line_10e18", [(10**12, 1_000_000)]),  # each field at its own limit: the line that made sums wrap
    ("line_just_over", [(10**12, 11)]),
    ("order_just_over", [(10**12, 5), (10**12, 5), (1, 1)]),
    ("many_lines", [(10**12, 1)] * 11),
    ("issue_example", [(10**12, 1_000_000)] * 1_000),  # 10^21: far past Int64
]


def test_orders_that_cannot_be_booked_exactly_are_refused(settings, redis_client) -> None:
    """Every member of the class (a line, or the sum of lines, past 10^13 minor units; refunds too) gets
    400 amount_out_of_range with the reason, is counted, and stores nothing; the bound itself is accepted."""

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1"
            cases = [(name, _with_items(items)) for name, items in OVER_BOUND]
            cases.append(("refund_over", _with_items([(10**12, 11)], kind="order.refunded")))
            for n, (name, body) in enumerate(cases):
                response = await client.post(
                    url, content=body, headers=signed(secret, body, msg_id=f"ob-{n}")
                )
                assert response.status_code == 400, (name, response.text)
                error = response.json()["error"]
                assert error["code"] == "amount_out_of_range", name
                assert "exceeds 10000000000000" in error["message"], (name, error)
            text = (await client.get("/metrics")).text
            assert metric(text, "amount_out_of_range") == len(cases)
            assert stream_len(settings, redis_client) == 0
            assert not redis_client.keys(settings.redis_prefix + "webhook:*")
            at_bound = _with_items([(10**12, 5), (10**12, 5)], order_id="A-at-bound")
            ok = await client.post(url, content=at_bound, headers=signed(secret, at_bound, msg_id="ok"))
            assert ok.status_code == 202, ok.text
            assert stream_len(settings, redis_client) == 1

    asyncio.run(scenario())


def test_the_webhook_url_with_a_trailing_slash_is_the_same_endpoint(settings, redis_client) -> None:
    """A merchant's stored URL may end in a slash: accepted, refused and counted as without it (other
    routes answer a trailing slash with 404, never a redirect)."""

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1/"
            accepted = await client.post(url, content=BODY, headers=signed(secret, BODY))
            assert accepted.status_code == 202, accepted.text
            again = await client.post(url, content=BODY, headers=signed(secret, BODY))
            refused = await client.post(
                url, content=BODY, headers={**signed(secret, BODY), "webhook-signature": "v1,AA=="}
            )
            assert (again.status_code, refused.status_code) == (200, 401)
            text = (await client.get("/metrics")).text
            assert (metric(text, "accepted"), metric(text, "duplicate"), metric(text, "bad_signature")) == (
                1,
                1,
                1,
            )
            listed = await client.get("/api/merchants/brand1/deliveries", headers=ADMIN)
            assert [d["result"] for d in listed.json()["deliveries"]] == ["refused", "duplicate", "accepted"]
            assert stream_len(settings, redis_client) == 1

    asyncio.run(scenario())
