"""The merchant's webhook debugger through the real app and Redis: every outcome class appears with its
reason, status, webhook-id, body hash and size; no refused body (nor any part of it) is stored; the
list is capped, scoped and filterable."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.asyncio import Redis

from attribution.debugger import MAX_RECORDS, Delivery, DeliveryLog
from core.keys import Keys
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.test_webhooks import MERCHANT, make_merchant, signed

pytestmark = pytest.mark.redis
MARKER = "SECRET-MARKER-7Q"


def order(**data) -> bytes:
    body = {
        "order_id": "A-1",
        "click_id": "x" * 30,
        "currency": "EUR",
        "occurred_at": "2026-11-27T10:00:00Z",
        "items": [{"sku": "SKU-1", "unit_price_minor": 5990, "quantity": 2}],
    }
    body.update(data)
    return json.dumps({"type": "order.created", "data": body}).encode()


def test_every_outcome_is_shown_without_bodies(settings, redis_client):
    async def scenario():
        async with running_app(settings) as (_, client):
            created = await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)
            secret = created.json()["webhook_secret"]
            key = (await client.post("/api/keys", json={"merchant_id": "brand1"}, headers=ADMIN)).json()[
                "key"
            ]
            merchant = {"authorization": f"Bearer {key}"}
            url = "/webhooks/orders/brand1"
            good = order()
            marked = order(order_id=MARKER)
            old = datetime.now(UTC) - timedelta(minutes=10)
            big = b" " * (300 * 1024)
            bad_quantity = order(items=[{"sku": MARKER, "unit_price_minor": 1, "quantity": "two"}])
            too_much = order(items=[{"sku": "S", "unit_price_minor": 10**12, "quantity": 10**6}])
            bad_clock = {**signed(secret, marked, "m5"), "webhook-timestamp": "１２".encode()}
            cases = [
                # (body, headers, expected result, reason, status)
                (good, signed(secret, good, "m1"), "accepted", "accepted", 202),
                (good, signed(secret, good, "m1"), "duplicate", "duplicate", 200),
                (marked, signed(secret, marked, "m1"), "refused", "conflict", 409),
                (marked, signed("whsec_" + "A" * 32, marked, "m2"), "refused", "bad_signature", 401),
                (marked, signed(secret, marked, "m3", at=old), "refused", "stale_timestamp", 401),
                (marked, {"webhook-id": "m4"}, "refused", "missing_headers", 401),
                (marked, bad_clock, "refused", "bad_timestamp", 401),
                (bad_quantity, None, "refused", "malformed", 400),
                (order(currency=MARKER), None, "refused", "malformed", 400),
                (too_much, None, "refused", "amount_out_of_range", 400),
                (big, {"webhook-id": "m9"}, "refused", "too_large", 413),
            ]  # fmt: skip
            for i, (body, headers, *_) in enumerate(cases):
                headers = headers or signed(secret, body, f"s{i}")
                await client.post(url, content=body, headers=headers)
            # An unknown merchant has no debugger: nothing is recorded anywhere for it.
            assert (await client.post("/webhooks/orders/nobody", content=good)).status_code == 404

            listed = await client.get("/api/merchants/brand1/deliveries?limit=200", headers=merchant)
            deliveries = listed.json()["deliveries"][::-1]  # oldest first, like the cases
            got = [(d["result"], d["reason"], d["status"]) for d in deliveries]
            assert got == [tuple(c[2:]) for c in cases]
            first = deliveries[0]
            assert first["webhook_id"] == "m1" and first["size_bytes"] == len(good)
            assert first["body_sha256"] == hashlib.sha256(good).hexdigest()
            schema = deliveries[7]
            assert schema["code"] == "malformed" and "$.data.items[0].quantity" in schema["message"]
            assert "$.data.currency" in deliveries[8]["message"]
            assert deliveries[10]["size_bytes"] == len(big) and deliveries[10]["body_sha256"] == ""
            assert deliveries[3]["message"] == "webhook signature verification failed: bad signature"

            keys = Keys(settings.redis_prefix)
            for stream in (keys.merchant_deliveries("brand1"), keys.merchant_unsigned_deliveries("brand1")):
                raw = redis_client.xrange(stream)
                assert raw and MARKER.encode() not in b"".join(v for _, f in raw for v in f.values())
            assert not list(redis_client.scan_iter(match=settings.redis_prefix + "merchant:nobody*"))

            refused = await client.get(
                "/api/merchants/brand1/deliveries?result=refused&limit=3", headers=merchant
            )
            assert [d["reason"] for d in refused.json()["deliveries"]] == [
                "too_large",
                "amount_out_of_range",
                "malformed",
            ]
            for query, status in [
                ("?limit=0", 400),
                ("?limit=201", 400),
                ("?limit=x", 400),
                ("?result=ok", 400),
            ]:
                assert (
                    await client.get(f"/api/merchants/brand1/deliveries{query}", headers=merchant)
                ).status_code == status
            other = (await client.post("/api/keys", json={"creator_id": "alice"}, headers=ADMIN)).json()[
                "key"
            ]
            forbidden = await client.get(
                "/api/merchants/brand1/deliveries", headers={"authorization": f"Bearer {other}"}
            )
            assert forbidden.status_code == 403
            assert (await client.get("/api/merchants/nobody/deliveries", headers=ADMIN)).status_code == 404

    asyncio.run(scenario())


def test_the_record_keeps_the_latest_only(settings, redis_client: redis.Redis):
    async def scenario():
        client = Redis.from_url(settings.redis_url)
        log = DeliveryLog(client, Keys(settings.redis_prefix), pytest.fail)
        for i in range(MAX_RECORDS + 25):
            await log.record("brand1", Delivery(at_ms=i, webhook_id=f"w{i}" + "x" * 300, result="accepted"))
        latest = await log.latest("brand1", MAX_RECORDS)
        assert (
            len(latest) == MAX_RECORDS
            and latest[0]["at_ms"] == MAX_RECORDS + 24
            and latest[-1]["at_ms"] == 25
        )
        assert len(latest[0]["webhook_id"]) == 256
        await client.aclose()

    asyncio.run(scenario())


def test_records_written_before_their_number_list_as_the_oldest(settings) -> None:
    """Records of a release before the record number (signed stream only, no `n`) keep their order and
    come after every numbered one."""

    async def scenario():
        client = Redis.from_url(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        for name in ("old-1", "old-2"):
            record = {"at_ms": 1, "webhook_id": name, "result": "accepted"}
            await client.xadd(keys.merchant_deliveries("brand1"), {"d": json.dumps(record)})
        log = DeliveryLog(client, keys, pytest.fail)
        await log.record("brand1", Delivery(at_ms=2, webhook_id="new-1", result="refused"))
        await log.record("brand1", Delivery(at_ms=3, webhook_id="new-2", result="accepted", signed=True))
        listed = [d["webhook_id"] for d in await log.latest("brand1", 10)]
        assert listed == ["new-2", "new-1", "old-2", "old-1"]
        await client.aclose()

    asyncio.run(scenario())


# Requests anyone can send to a merchant's webhook URL, refused before a signature matched.
UNSIGNED = {
    "missing_headers": lambda body, secret: {"webhook-id": "forged"},
    "bad_timestamp": lambda body, secret: {**signed(secret, body, "forged"), "webhook-timestamp": "x"},
    "stale_timestamp": lambda body, secret: signed(
        secret, body, "forged", at=datetime.now(UTC) - timedelta(minutes=10)
    ),
    "bad_signature": lambda body, secret: signed("whsec_" + "A" * 32, body, "forged"),
    "too_large": lambda body, secret: {"webhook-id": "forged", "content-length": str(300 * 1024)},
    "bad_content_length": lambda body, secret: {"webhook-id": "forged", "content-length": "1e3"},
    "bad_webhook_id": lambda body, secret: {**signed(secret, body, "forged\x7f"), "webhook-id": "forged\x7f"},
}


def test_the_two_records_merge_in_the_order_redis_took_them(settings, monkeypatch) -> None:
    """Signed and unsigned records interleaved, written by hosts whose clocks disagree (`at_ms` runs
    backwards here), most of them in one millisecond: the list is newest first in the order Redis took
    them."""

    backwards = iter(range(10**18, 0, -(10**9)))  # a writer's clock stepping back a second a record
    monkeypatch.setattr(time, "time_ns", lambda: next(backwards))

    async def scenario():
        client = Redis.from_url(settings.redis_url)
        log = DeliveryLog(client, Keys(settings.redis_prefix), pytest.fail)
        for i in range(8):
            signed_ = i % 3 != 1
            result = "accepted" if signed_ else "refused"
            await log.record(
                "brand1", Delivery(at_ms=10_000 - i, webhook_id=f"w{i}", result=result, signed=signed_)
            )
        assert [d["webhook_id"] for d in await log.latest("brand1", 20)] == [
            f"w{i}" for i in range(7, -1, -1)
        ]
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("reason", sorted(UNSIGNED))
def test_unsigned_requests_never_evict_signed_records(settings, redis_client, monkeypatch, reason):
    """An unsigned flood (anyone knows the URL) fills only its own capped record: the debugger still
    shows the merchant's signed deliveries, and the latest unsigned refusals next to them."""
    monkeypatch.setattr("attribution.debugger.MAX_RECORDS", 4)

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1"
            good = order()
            assert (
                await client.post(url, content=good, headers=signed(secret, good, "real"))
            ).status_code == 202
            for _ in range(6):
                headers = UNSIGNED[reason](good, secret)
                body = b"" if "content-length" in headers else good
                refused = await client.post(url, content=body, headers=headers)
                assert refused.status_code in (400, 401, 413), refused.text
            shown = {}
            for query in ("limit=4", "limit=4&result=accepted"):
                listed = await client.get(f"/api/merchants/brand1/deliveries?{query}", headers=ADMIN)
                shown[query] = [(d["webhook_id"], d["reason"]) for d in listed.json()["deliveries"]]
            forged = "forged\\x7f" if reason == "bad_webhook_id" else "forged"  # shown escaped
            assert shown == {
                "limit=4": [(forged, reason)] * 4,
                "limit=4&result=accepted": [("real", "accepted")],
            }

    asyncio.run(scenario())


# Entries no release writes, planted in either record stream: each is left out of the listing.
CORRUPT_RECORDS = {
    "no_record_field": {b"x": b"1"},
    "not_json": {b"d": b"\xff\xfe"},
    "nan": {b"d": b'{"result": NaN}'},
    "deeply_nested": {b"d": b"[" * 10_000 + b"]" * 10_000},
    "an_array": {b"d": b"[1, 2]"},
    "a_string": {b"d": b'"accepted"'},
    "null": {b"d": b"null"},
    "no_result": {b"d": b'{"at_ms": 1, "webhook_id": "w"}'},
    "result_a_number": {b"d": b'{"at_ms": 1, "webhook_id": "w", "result": 1}'},
    "unknown_result": {b"d": b'{"at_ms": 1, "webhook_id": "w", "result": "lost"}'},
    "no_time": {b"d": b'{"webhook_id": "w", "result": "accepted"}'},
    "time_past_year_9999": {b"d": b'{"at_ms": 253402300800000, "webhook_id": "w", "result": "accepted"}'},
    "negative_time": {b"d": b'{"at_ms": -1, "webhook_id": "w", "result": "accepted"}'},
    "time_a_float": {b"d": b'{"at_ms": 1.5, "webhook_id": "w", "result": "accepted"}'},
    "id_a_number": {b"d": b'{"at_ms": 1, "webhook_id": 7, "result": "accepted"}'},
}


@pytest.mark.parametrize("stream", ["signed", "unsigned"])
@pytest.mark.parametrize("corrupt", sorted(CORRUPT_RECORDS))
def test_a_corrupt_record_is_left_out_of_the_listing(settings, redis_client, stream, corrupt) -> None:
    """A record that is not one, in either stream: every listing (and the dashboard's page, which reads
    `latest` too) answered 500 until the entry aged out. It is left out; the records around it are listed.
    Each time it is left out is counted (it was logged only)."""
    keys = Keys(settings.redis_prefix)
    key = (
        keys.merchant_deliveries("brand1")
        if stream == "signed"
        else keys.merchant_unsigned_deliveries("brand1")
    )

    async def scenario():
        async with running_app(settings) as (_, client):
            secret = await make_merchant(client)
            url = "/webhooks/orders/brand1"
            good = order()
            sent = await client.post(url, content=good, headers=signed(secret, good, "real"))
            assert sent.status_code == 202
            redis_client.xadd(key, CORRUPT_RECORDS[corrupt])
            assert (await client.post(url, content=good, headers={"webhook-id": "forged"})).status_code == 401
            shown = {}
            for query in ("", "?limit=1", "?limit=2", "?result=accepted", "?result=refused"):
                listed = await client.get(f"/api/merchants/brand1/deliveries{query}", headers=ADMIN)
                assert listed.status_code == 200, (query, listed.text)
                shown[query] = [d["webhook_id"] for d in listed.json()["deliveries"]]
            assert shown == {
                "": ["forged", "real"],
                "?limit=1": ["forged"],
                "?limit=2": ["forged", "real"],
                "?result=accepted": ["real"],
                "?result=refused": ["forged"],
            }
            # Counted each time a listing left it out: it has no record number, so it lists as the oldest
            # and the two listings with a limit stop before it.
            text = (await client.get("/metrics")).text
            assert 'clicktrail_records_dropped_total{reason="unreadable_webhook_record"} 3.0' in text

    asyncio.run(scenario())
