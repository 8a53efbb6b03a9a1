"""Discount codes, attribution priority, review and trace through real HTTP: redirects, webhooks signed by
the official `standardwebhooks` package, `ingest --once`, the attributor, the exact ledger to the cent,
the trace API and `clicktrail attribute --explain`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks import Webhook

from core.migrate import migrate
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.servehelp import settings_env
from tests.integration.test_end_to_end import BROWSER, ingest_and_attribute

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
CLI = str(Path(sys.executable).with_name("clicktrail"))
SHOES = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}]  # basis 11,980


def signed(secret: str, msg_id: str, order_id: str, click_id: str = "", codes=None, kind="order.created"):
    data = {
        "order_id": order_id,
        "click_id": click_id,
        "currency": "EUR",
        "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "items": SHOES,
    }
    if codes is not None:
        data["discount_codes"] = codes
    body = json.dumps({"type": kind, "data": data}).encode()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    return body, headers


def books(clickhouse) -> dict[str, list[tuple]]:
    """Per order: (status, net amount, creator, attributed_by, code, reason of the accrual) per status."""
    rows = clickhouse.execute(
        "SELECT order_id, status, sum(amount_minor), any(creator_id), any(attributed_by), any(code), "
        "anyIf(reason, kind = 'accrual') "
        f"FROM {clickhouse.database}.commissions WHERE kind != 'none' "
        "GROUP BY order_id, status ORDER BY order_id, status"
    )
    out: dict[str, list[tuple]] = {}
    for order_id, status, amount, creator, by, code, reason in rows:
        out.setdefault(order_id, []).append((status, int(amount), creator, by, code, reason))
    return out


def test_codes_priority_review_and_trace(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            merchant = {
                "merchant_id": "brand",
                "name": "Brand",
                "domains": ["shop.brand.example"],
                "currency": "EUR",
                "default_rate_bps": 1000,
            }
            created = await client.post("/api/merchants", json=merchant, headers=ADMIN)
            assert created.status_code == 201, created.text
            assert created.json()["attribution_priority"] == "click"
            assert created.json()["review"] == {"min_click_to_order_s": 0, "max_clicks_per_ip_hour": 0}
            secret = created.json()["webhook_secret"]
            other = {**merchant, "merchant_id": "brand2", "domains": ["brand2.example"]}
            strict = {"attribution_priority": "code", "review": {"min_click_to_order_s": 5}}
            made = await client.post("/api/merchants", json={**other, **strict}, headers=ADMIN)
            assert made.status_code == 201, made.text
            assert made.json()["review"] == {"min_click_to_order_s": 5, "max_clicks_per_ip_hour": 0}
            for bad in (
                {"attribution_priority": "x"},
                {"review": {"min_click_to_order_s": -5}},
                {"policies": []},
            ):
                refused = await client.post(
                    "/api/merchants", json={**other, "merchant_id": "b3", **bad}, headers=ADMIN
                )
                assert refused.status_code == 422, refused.text
            keys = {}
            for subject in ({"merchant_id": "brand"}, {"creator_id": "alice"}, {"creator_id": "bob"}):
                issued = await client.post("/api/keys", json=subject, headers=ADMIN)
                keys[next(iter(subject.values()))] = {"authorization": f"Bearer {issued.json()['key']}"}

            async def send(msg_id, order_id, click_id="", codes=None):
                body, headers = signed(secret, msg_id, order_id, click_id, codes)
                response = await client.post("/webhooks/orders/brand", content=body, headers=headers)
                assert response.status_code == 202, response.text

            # codes: the merchant's key; case-insensitive, unique per merchant, spans kept
            put = await client.put(
                "/api/merchants/brand/codes/BOB10",
                json={"creator_id": "bob", "rate_bps": 500},
                headers=keys["brand"],
            )
            assert put.status_code == 200 and put.json()["active"] and put.json()["rate_bps"] == 500
            put = await client.put(
                "/api/merchants/brand/codes/alice5", json={"creator_id": "alice"}, headers=keys["brand"]
            )
            assert put.status_code == 200 and put.json()["rate_bps"] is None
            again = await client.put(
                "/api/merchants/brand/codes/bob10", json={"creator_id": "bob", "rate_bps": 500}, headers=ADMIN
            )
            assert len(again.json()["spans"]) == 1 and again.json()["code"] == "BOB10"  # nothing changed
            assert (
                await client.put("/api/merchants/brand/codes/B", json={"creator_id": "bob"}, headers=ADMIN)
            ).status_code == 422
            assert (
                await client.put(
                    "/api/merchants/brand/codes/BOB10", json={"creator_id": "bob"}, headers=keys["alice"]
                )
            ).status_code == 403
            listed = (await client.get("/api/merchants/brand/codes", headers=keys["brand"])).json()["codes"]
            assert [(c["code"], c["creator_id"], c["active"]) for c in listed] == [
                ("alice5", "alice", True),
                ("BOB10", "bob", True),
            ]

            link = await client.post(
                "/api/links",
                json={"url": "https://shop.brand.example/p/1", "creator_id": "alice"},
                headers=ADMIN,
            )
            response = await client.get(f"/{link.json()['code']}", headers={"user-agent": BROWSER})
            alice_click = parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0]

            # a bad discount_codes is refused with the field named, nothing stored
            for bad in ("BOB10", [1], ["x" * 65], ["A"] * 21, [""]):
                body, headers = signed(secret, "bad", "O-bad", codes=bad)
                refused = await client.post("/webhooks/orders/brand", content=body, headers=headers)
                assert refused.status_code == 400 and "discount_codes" in refused.json()["error"]["message"]

            await send("w1", "O-code", codes=["bob10"])  # no click: the code credits bob at its own 5 %
            await send("w2", "O-click-wins", alice_click, ["BOB10"])  # priority click: alice at 10 %
            delete = await client.delete("/api/merchants/brand/codes/ALICE5", headers=keys["brand"])
            assert delete.status_code == 200 and not delete.json()["active"]
            assert (
                await client.delete("/api/merchants/brand/codes/ALICE5", headers=ADMIN)
            ).status_code == 404
            await send("w3", "O-removed", codes=["ALICE5"])  # removed before the order: nothing
            await asyncio.sleep(0.01)

            # PATCH: the merchant's own key; a table of settable fields, each validated
            for bad in (
                {"attribution_priority": "x"},
                {"review": {"min_click_to_order_s": -1}},
                {"review": {"max_clicks_per_ip_hour": 10**9}},
                {"currency": "USD"},
                {"currencies": ["EUR", "XYZ"]},
                {},
            ):
                refused = await client.patch("/api/merchants/brand", json=bad, headers=keys["brand"])
                assert refused.status_code == 422, (bad, refused.text)
            assert (
                await client.patch(
                    "/api/merchants/brand", json={"attribution_priority": "code"}, headers=keys["alice"]
                )
            ).status_code == 403
            patched = await client.patch(
                "/api/merchants/brand", json={"attribution_priority": "code"}, headers=keys["brand"]
            )
            assert patched.status_code == 200 and patched.json()["attribution_priority"] == "code"
            assert "policies" not in patched.json()
            await asyncio.sleep(0.01)
            await send("w4", "O-code-wins", alice_click, ["BOB10"])  # priority code: bob at 5 %
            review = {"min_click_to_order_s": 3600, "max_clicks_per_ip_hour": 0}
            patched = await client.patch("/api/merchants/brand", json={"review": review}, headers=ADMIN)
            assert patched.status_code == 200 and patched.json()["review"] == review
            patched = await client.patch(
                "/api/merchants/brand", json={"currencies": ["EUR", "USD"]}, headers=keys["brand"]
            )
            assert patched.status_code == 200 and patched.json()["currencies"] == ["EUR", "USD"]
            await asyncio.sleep(0.01)
            await send("w5", "O-approve", alice_click)  # an order within the hour: held for review
            await send("w6", "O-reject", alice_click)

            summary = await ingest_and_attribute(settings, clickhouse)
            assert summary.outcomes == {"credited": 5, "no_active_code": 1}, summary.outcomes
            # 11,980 × 5 % = 599; × 10 % = 1198
            assert books(clickhouse) == {
                "O-approve": [("review", 1198, "alice", "click", "", "min_click_to_order_s")],
                "O-click-wins": [("pending", 1198, "alice", "click", "", "")],
                "O-code": [("pending", 599, "bob", "code", "BOB10", "")],
                "O-code-wins": [("pending", 599, "bob", "code", "BOB10", "")],
                "O-reject": [("review", 1198, "alice", "click", "", "min_click_to_order_s")],
            }

            # review decisions: idempotent, 409 for another decision or nothing in review
            url = "/api/merchants/brand/orders/{}/review"
            assert (
                await client.post(url.format("O-code"), json={"decision": "approve"}, headers=ADMIN)
            ).status_code == 409
            assert (
                await client.post(url.format("O-approve"), json={"decision": "maybe"}, headers=ADMIN)
            ).status_code == 422
            assert (
                await client.post(
                    url.format("O-approve"), json={"decision": "approve"}, headers=keys["alice"]
                )
            ).status_code == 403
            first = await client.post(
                url.format("O-approve"), json={"decision": "approve"}, headers=keys["brand"]
            )
            assert first.status_code == 200 and first.json()["decision"] == "approve"
            again = await client.post(
                url.format("O-approve"), json={"decision": "approve"}, headers=keys["brand"]
            )
            assert again.json() == first.json()
            assert (
                await client.post(url.format("O-approve"), json={"decision": "reject"}, headers=ADMIN)
            ).status_code == 409
            assert (
                await client.post(url.format("O-reject"), json={"decision": "reject"}, headers=ADMIN)
            ).status_code == 200

            await ingest_and_attribute(settings, clickhouse)
            after = books(clickhouse)
            assert after["O-approve"] == [
                ("pending", 1198, "alice", "click", "", ""),
                ("review", 0, "alice", "click", "", "min_click_to_order_s"),
            ]
            assert after["O-reject"] == [("review", 0, "alice", "click", "", "min_click_to_order_s")]
            rows = clickhouse.execute(
                "SELECT entry_id, kind, status, amount_minor, reason, orders "
                f"FROM {clickhouse.database}.commissions WHERE order_id = 'O-reject' ORDER BY entry_id"
            )
            assert [tuple(r) for r in rows] == [
                ("review:acc:0", "accrual", "review", 1198, "min_click_to_order_s", 1),
                ("review:rej:0", "reversal", "review", -1198, "rejected", -1),
            ]
            count = clickhouse.execute(f"SELECT count() FROM {clickhouse.database}.commissions")[0][0]
            await ingest_and_attribute(settings, clickhouse)  # a rerun appends nothing
            assert clickhouse.execute(f"SELECT count() FROM {clickhouse.database}.commissions")[0][0] == count

            # trace: merchant, admin, and the credited creator's key; never another creator's
            trace_url = "/api/merchants/brand/orders/{}/trace"
            credited = await client.get(trace_url.format("O-code"), headers=keys["bob"])
            assert credited.status_code == 200, credited.text
            trace = credited.json()
            assert list(trace) == [
                "order_id",
                "events",
                "click",
                "codes",
                "review",
                "items",
                "ledger",
                "outcome",
            ]
            assert trace["outcome"] == "credited" and trace["click"]["click_id"] == ""
            assert trace["codes"] == [
                {
                    "code": "bob10",
                    "status": "active",
                    "creator_id": "bob",
                    "rate_bps": 500,
                    "active_from_ms": trace["codes"][0]["active_from_ms"],
                    "active_to_ms": None,
                    "credited": True,
                }
            ]
            assert trace["items"] == [
                {
                    "sku": "SKU-1",
                    "basis_minor": 11980,
                    "rate_bps": 500,
                    "rate_rule": "code",
                    "rate_version": 1,
                    "amount_minor": 599,
                }
            ]
            assert [(r["entry_id"], r["amount_minor"], r["booked"]) for r in trace["ledger"]] == [
                ("code:acc:0", 599, True)
            ]
            assert (await client.get(trace_url.format("O-code"), headers=keys["alice"])).status_code == 403
            clicked = (await client.get(trace_url.format("O-approve"), headers=keys["brand"])).json()
            assert clicked["click"] | {"ts": None} == {
                "click_id": alice_click,
                "mac_ok": True,
                "found": True,
                "ts": None,
                "code": link.json()["code"],
                "creator_id": "alice",
                "is_bot": False,
                "owner_ok": True,
                "in_window": True,
            }
            assert [r["rule"] for r in clicked["review"]] == ["min_click_to_order_s", "decision"]
            assert clicked["review"][0]["tripped"] and clicked["review"][1]["decision"] == "approve"
            refused = (await client.get(trace_url.format("O-removed"), headers=ADMIN)).json()
            assert refused["outcome"] == "no_active_code" and refused["items"] == []
            assert [(c["code"], c["status"], c["creator_id"]) for c in refused["codes"]] == [
                ("ALICE5", "inactive", "alice")
            ]
            assert (await client.get(trace_url.format("O-none"), headers=ADMIN)).status_code == 404

    asyncio.run(scenario())

    # the same decision record as text, from the command line; it books nothing
    count = clickhouse.execute(f"SELECT count() FROM {clickhouse.database}.commissions")[0][0]
    env = settings_env(settings)
    shown = subprocess.run(
        [CLI, "attribute", "--explain", "brand", "O-code-wins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("order O-code-wins: credited")
    assert "BOB10: active -> bob (rate 500) [credited]" in shown.stdout
    as_json = subprocess.run(
        [CLI, "attribute", "--explain", "brand", "O-code-wins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(as_json.stdout)["ledger"][0]["attributed_by"] == "code"
    assert clickhouse.execute(f"SELECT count() FROM {clickhouse.database}.commissions")[0][0] == count
