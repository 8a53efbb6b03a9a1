"""Merchants for dashboard tests: two merchants and a creator made through the API, and a signed order
webhook carrying discount codes (credited by the code: no click needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from tests.integration.apphelp import ADMIN
from tests.integration.dashhelp import issue_key

SHOES = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}]


def merchant(merchant_id: str, domain: str) -> dict:
    return {
        "merchant_id": merchant_id,
        "name": merchant_id.title(),
        "domains": [domain],
        "currency": "EUR",
        "default_rate_bps": 1000,
    }


def signed(secret: str, msg_id: str, order_id: str, codes: list[str]) -> tuple[bytes, dict]:
    now = datetime.now(UTC)
    data = {
        "order_id": order_id,
        "click_id": "",
        "currency": "EUR",
        "occurred_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "items": SHOES,
        "discount_codes": codes,
    }
    body = json.dumps({"type": "order.created", "data": data}).encode()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    return body, headers


async def setup(client) -> dict[str, str]:
    """Two merchants and a creator; returns brand's webhook secret and each one's key."""
    made = {}
    for merchant_id, domain in (("brand", "shop.brand.example"), ("other", "other.example")):
        created = await client.post("/api/merchants", json=merchant(merchant_id, domain), headers=ADMIN)
        assert created.status_code == 201, created.text
        made[f"{merchant_id}_secret"] = created.json()["webhook_secret"]
        made[merchant_id] = await issue_key(client, merchant_id=merchant_id)
    made["alice"] = await issue_key(client, creator_id="alice")
    return made
