"""Currencies, FX and payouts end to end through real HTTP: a merchant selling in EUR and USD, real
redirects, webhooks signed with the official `standardwebhooks` package, `ingest --once`, `attribute`,
earnings converted at admin-set rates, and payouts confirmed, failed and re-run, exact to the cent."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks import Webhook

from core.migrate import migrate
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.test_end_to_end import BROWSER, ingest_and_attribute

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
STATEMENT_COLUMNS = ("order_id", "sku", "quantity", "basis_minor", "rate_bps", "amount_minor", "booked_date",
                     "attributed_by", "kind", "entry_id")  # fmt: skip


def _now_iso(delta_s: float = 0) -> str:
    return (
        (datetime.now(UTC) + timedelta(seconds=delta_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def signed(secret: str, msg_id: str, kind: str, order_id: str, click_id: str, currency: str, items: list):
    body = json.dumps(
        {
            "type": kind,
            "data": {"order_id": order_id, "click_id": click_id, "currency": currency,
                     "occurred_at": _now_iso(), "items": items},
        }
    ).encode()  # fmt: skip
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    return body, headers


def item(sku: str, price: int, quantity: int) -> dict:
    return {"sku": sku, "category": "misc", "unit_price_minor": price, "quantity": quantity}


def test_two_currencies_fx_and_payouts(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            merchant = {"merchant_id": "duo", "name": "Duo", "domains": ["shop.duo.example"],
                        "currency": "EUR", "currencies": ["EUR", "USD"], "default_rate_bps": 1000,
                        "lock_days": 0}  # fmt: skip
            created = await client.post("/api/merchants", json=merchant, headers=ADMIN)
            assert created.status_code == 201, created.text
            assert created.json()["currencies"] == ["EUR", "USD"]
            secret = created.json()["webhook_secret"]

            async def key(scope: dict) -> dict:
                response = await client.post("/api/keys", json=scope, headers=ADMIN)
                return {"authorization": f"Bearer {response.json()['key']}"}

            alice_key, bob_key, duo_key = (
                await key({"creator_id": "alice"}),
                await key({"creator_id": "bob"}),
                await key({"merchant_id": "duo"}),
            )

            async def click(creator: str) -> str:
                link = await client.post(
                    "/api/links",
                    json={"url": "https://shop.duo.example/p/1", "creator_id": creator},
                    headers=ADMIN,
                )
                response = await client.get(f"/{link.json()['code']}", headers={"user-agent": BROWSER})
                return parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0]

            a1, a2, b1 = await click("alice"), await click("alice"), await click("bob")
            await asyncio.sleep(0.01)  # every order after its click

            async def send(msg_id, kind, order_id, click_id, currency, items, status=202):
                body, headers = signed(secret, msg_id, kind, order_id, click_id, currency, items)
                response = await client.post("/webhooks/orders/duo", content=body, headers=headers)
                assert response.status_code == status, response.text
                return response

            await send("e1", "order.created", "O-1", a1, "EUR", [item("SKU-1", 5990, 2)])  # 1198
            await send("e2", "order.created", "O-2", a2, "USD", [item("SKU-2", 2500, 1)])  # 250
            await send("e3", "order.created", "O-3", b1, "EUR", [item("SKU-2", 1999, 1)])  # 199.9 → 200
            refused = await send("e4", "order.created", "O-4", a1, "GBP", [item("SKU-1", 100, 1)], 400)
            assert refused.json()["error"]["code"] == "unsupported_currency"
            assert (
                'clicktrail_webhooks_total{result="unsupported_currency"} 1.0'
                in (await client.get("/metrics")).text
            )
            await send("e5", "order.refunded", "O-1", a1, "USD", [item("SKU-1", 5990, 1)])  # flagged only

            summary = await ingest_and_attribute(settings, clickhouse)
            assert summary.outcomes == {"credited": 3}
            db = clickhouse.database
            assert (
                clickhouse.execute(f"SELECT count() FROM {db}.order_events WHERE order_id = 'O-4'")[0][0] == 0
            )
            flags = clickhouse.execute(
                f"SELECT order_id, reason, amount_minor FROM {db}.commissions WHERE kind = 'flag'"
            )
            assert [tuple(r) for r in flags] == [("O-1", "currency_mismatch", 0)]

            async def earnings(creator: str, query: str = "") -> dict:
                response = await client.get(f"/api/creators/{creator}/earnings{query}", headers=ADMIN)
                assert response.status_code == 200, response.text
                return response.json()

            def by_currency(body: dict, field: str) -> dict:
                return {c["currency"]: c[field] for c in body["currencies"]}

            assert by_currency(await earnings("alice"), "approved_minor") == {"EUR": 1198, "USD": 250}

            # FX: only the admin sets rates; earnings converted at the rates in effect now
            fx = {"base": "EUR", "rates": {"USD": "1.0850", "GBP": "0.8312"}, "effective_at": _now_iso(-3600)}
            assert (await client.put("/api/fx", json=fx, headers=duo_key)).status_code == 403
            put = await client.put("/api/fx", json=fx, headers=ADMIN)
            assert put.status_code == 201 and put.json()["version"] == 1, put.text
            future = {
                "base": "EUR",
                "rates": {"USD": "2"},
                "effective_at": _now_iso(3600),
            }  # not yet in effect
            assert (await client.put("/api/fx", json=future, headers=ADMIN)).json()["version"] == 2
            listed = (await client.get("/api/fx", headers=alice_key)).json()["versions"]
            assert [(v["version"], v["rates"]["USD"]) for v in listed] == [(1, "1.0850"), (2, "2")]
            converted = (await earnings("alice", "?in=EUR"))["converted"]
            # 250 USD cents / 1.0850 = 230.41 → 230 EUR cents
            assert converted == {"currency": "EUR", "pending_minor": 0, "approved_minor": 1198 + 230,
                                 "in_payout_minor": 0, "paid_minor": 0,
                                 "rates": {"USD": "1.0850"}}  # fmt: skip
            missing = await client.get("/api/creators/alice/earnings?in=USD", headers=ADMIN)
            assert missing.status_code == 422 and "EUR" in missing.json()["error"]["message"]

            # payouts: the merchant's key makes the batch; the same until again is the same batch
            until = _now_iso()
            await asyncio.sleep(0.01)
            first = await client.post("/api/merchants/duo/payouts", json={"until": until}, headers=duo_key)
            assert first.status_code == 201, first.text
            batch = first.json()
            paid = {(p["creator_id"], p["currency"]): p for p in batch["payouts"]}
            assert {k: (p["amount_minor"], p["lines"], p["status"]) for k, p in paid.items()} == {
                ("alice", "EUR"): (1198, 1, "in_payout"),
                ("alice", "USD"): (250, 1, "in_payout"),
                ("bob", "EUR"): (200, 1, "in_payout"),
            }
            again = await client.post("/api/merchants/duo/payouts", json={"until": until}, headers=ADMIN)
            assert again.status_code == 200 and again.json() == batch
            other = await client.post("/api/merchants/duo/payouts", json={"until": until}, headers=alice_key)
            assert other.status_code == 403

            eur, usd = paid[("alice", "EUR")]["payout_id"], paid[("alice", "USD")]["payout_id"]
            for _ in range(2):  # idempotent
                confirmed = await client.post(f"/api/payouts/{eur}/confirm", headers=duo_key)
                assert confirmed.status_code == 200 and confirmed.json()["status"] == "paid"
            assert (await client.post(f"/api/payouts/{eur}/fail", headers=duo_key)).status_code == 409
            assert (await client.post(f"/api/payouts/{usd}/fail", headers=ADMIN)).json()["status"] == "failed"
            assert (await client.post(f"/api/payouts/{usd}/confirm", headers=ADMIN)).status_code == 409
            assert (await client.post(f"/api/payouts/{usd}/confirm", headers=alice_key)).status_code == 403

            # reading: the merchant, the creator paid, the admin; not another creator
            assert (await client.get(f"/api/payouts/{eur}", headers=alice_key)).json()["amount_minor"] == 1198
            assert (await client.get(f"/api/payouts/{eur}", headers=duo_key)).status_code == 200
            assert (await client.get(f"/api/payouts/{eur}", headers=bob_key)).status_code == 403
            csv = await client.get(f"/api/payouts/{eur}/statement.csv", headers=alice_key)
            assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
            header, *lines = csv.text.strip().split("\r\n")
            assert header.split(",") == [*STATEMENT_COLUMNS]
            day = datetime.now(UTC).date().isoformat()
            assert lines == [f"O-1,SKU-1,2,11980,1000,1198,{day},click,approval,apr:0:approved"]

            # the failed USD payout's row is paid again by the next batch, and only it
            rerun_until = _now_iso()
            await asyncio.sleep(0.01)
            rerun = await client.post(
                "/api/merchants/duo/payouts", json={"until": rerun_until}, headers=ADMIN
            )
            assert rerun.status_code == 201, rerun.text
            assert [(p["creator_id"], p["currency"], p["amount_minor"]) for p in rerun.json()["payouts"]] == [
                ("alice", "USD", 250)
            ]
            usd2 = rerun.json()["payouts"][0]["payout_id"]
            assert (await client.post(f"/api/payouts/{usd2}/confirm", headers=ADMIN)).json()[
                "status"
            ] == "paid"

            alice = await earnings("alice", "?in=EUR")
            assert by_currency(alice, "paid_minor") == {"EUR": 1198, "USD": 250}
            assert by_currency(alice, "approved_minor") == {"EUR": 0, "USD": 0}
            assert by_currency(alice, "in_payout_minor") == {"EUR": 0, "USD": 0}
            assert alice["converted"]["paid_minor"] == 1198 + 230
            bob = await earnings("bob")
            assert by_currency(bob, "in_payout_minor") == {"EUR": 200}
            assert by_currency(bob, "approved_minor") == {"EUR": 0}
            stored = clickhouse.execute(
                f"SELECT creator_id, currency, status, sum(amount_minor) FROM {db}.commissions "
                "GROUP BY creator_id, currency, status HAVING sum(amount_minor) != 0 "
                "ORDER BY creator_id, currency, status"
            )
            assert [tuple(r) for r in stored] == [
                ("alice", "EUR", "paid", 1198),
                ("alice", "USD", "paid", 250),
                ("bob", "EUR", "in_payout", 200),
            ]

    asyncio.run(scenario())
