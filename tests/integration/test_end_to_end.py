"""The whole path: merchant and catalog, a creator's link, real redirects through the app, signed webhooks
(official `standardwebhooks`), `ingest --once`, `attribute`, and the exact ledger and earnings to the cent."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from attribution.attributor import Attributor
from attribution.events import order_stream_spec
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from core.redisclient import failover_client
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import ADMIN, running_app

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
BOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"


def webhook(
    secret: str, msg_id: str, kind: str, order_id: str, click_id: str, items: list
) -> tuple[bytes, dict]:
    body = json.dumps(
        {
            "type": kind,
            "data": {
                "order_id": order_id,
                "click_id": click_id,
                "currency": "EUR",
                "occurred_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
                "items": items,
            },
        }
    ).encode()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    return body, headers


def ingest_once(settings) -> None:
    specs = [*stream_specs(settings), order_stream_spec(Keys.of(settings))]
    assert run_streams(settings, specs, consumer="e2e", registry=CollectorRegistry(), once=True) == 0


async def ingest_and_attribute(settings, clickhouse):
    """Everything recorded so far into ClickHouse, then one attribution batch; returns its summary."""
    await asyncio.sleep(0.3)  # let the recorder's group commit reach Redis
    await asyncio.to_thread(ingest_once, settings)
    r = failover_client(settings, role="test")
    try:
        return await Attributor(r, Keys.of(settings), clickhouse, ClickIds(settings.secret_bytes)).run_once()
    finally:
        await r.aclose()


def test_click_to_commission(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            merchant = {
                "merchant_id": "brand",
                "name": "Brand",
                "domains": ["shop.brand.example"],
                "currency": "EUR",
                "default_rate_bps": 800,
            }
            secret = (await client.post("/api/merchants", json=merchant, headers=ADMIN)).json()[
                "webhook_secret"
            ]
            products = [
                {
                    "sku": "SKU-1",
                    "title": "Shoe",
                    "url": "https://shop.brand.example/p/1",
                    "category": "shoes",
                    "price_minor": 5990,
                    "currency": "EUR",
                    "rate_bps": 1500,
                }
            ]
            put = await client.put("/api/merchants/brand/catalog", json=products, headers=ADMIN)
            assert put.status_code == 200
            link = await client.post(
                "/api/links",
                json={"url": "https://shop.brand.example/p/1?c=red", "creator_id": "alice"},
                headers=ADMIN,
            )
            code = link.json()["code"]
            assert link.json()["merchant_id"] == "brand"

            async def click(method: str, agent: str) -> str:
                response = await client.request(method, f"/{code}", headers={"user-agent": agent})
                assert response.status_code == 302
                return parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0]

            human, preview, bot = (
                await click("GET", BROWSER),
                await click("HEAD", BROWSER),
                await click("GET", BOT),
            )
            shoe2 = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}]
            shoe1 = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 1}]
            for msg_id, kind, order_id, click_id, items in [
                ("e1", "order.created", "O-1", human, shoe2),
                ("e2", "order.refunded", "O-1", human, shoe1),
                ("e3", "order.created", "O-2", preview, shoe2),
                ("e4", "order.created", "O-3", bot, shoe2),
            ]:
                body, headers = webhook(secret, msg_id, kind, order_id, click_id, items)
                response = await client.post("/webhooks/orders/brand", content=body, headers=headers)
                assert response.status_code == 202, response.text

            summary = await ingest_and_attribute(settings, clickhouse)
            assert summary.outcomes == {"credited": 1, "preview": 1, "bot": 1}

            db = clickhouse.database
            ledger = clickhouse.execute(
                "SELECT order_id, entry_id, amount_minor, rate_bps, rate_rule, creator_id "
                f"FROM {db}.commissions ORDER BY order_id, entry_id"
            )
            # 5990 × 2 × 15 % = 1797; refund 5990 × 1 × 15 % = 898.5 → 898 (half-even)
            assert [tuple(row) for row in ledger] == [
                ("O-1", "acc:0", 1797, 1500, "sku", "alice"),
                ("O-1", "rev:e2:0", -898, 1500, "sku", "alice"),
                ("O-2", "none:preview", 0, 0, "", "alice"),
                ("O-3", "none:bot", 0, 0, "", "alice"),
            ]
            earnings = await client.get("/api/creators/alice/earnings", headers=ADMIN)
            assert earnings.status_code == 200, earnings.text
            assert earnings.json()["clicks"] == 1
            assert earnings.json()["currencies"] == [
                {
                    "creator_id": "alice",
                    "currency": "EUR",
                    "clicks": 1,
                    "orders": 1,
                    "pending_minor": 899,
                    "approved_minor": 0,
                    "reversed_minor": 898,
                    "review_minor": 0,
                    "in_payout_minor": 0,
                    "paid_minor": 0,
                }
            ]

    asyncio.run(scenario())
