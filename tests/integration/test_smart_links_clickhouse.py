"""Smart links into ClickHouse: the click records the destination actually chosen (a rule to another
merchant's host is that merchant's click, with that merchant's click parameter, claimed like any link
when the merchant registers later) and attribution credits that merchant; the variant is on the click and
in the rollup; every PATCH is a version in `links`."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from core.migrate import migrate
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.test_domain_ownership import merchant, register
from tests.integration.test_end_to_end import ingest_and_attribute, webhook
from tests.integration.test_smart_links import DESKTOP, IPHONE

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def test_a_rule_to_another_merchants_host_is_that_merchants_click(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)
    db = clickhouse.database

    async def scenario():
        async with running_app(settings) as (app, client):
            secret1 = (await register(client, merchant("m1", "shop1.example")))["webhook_secret"]
            # The rule's host has no owner yet: m2 registers it after the link exists and claims it.
            rules = [{"when": {"os": ["ios"]}, "url": "https://shop2.example/app-landing"}]
            link = await make_link(client, "alice", "https://shop1.example/p", rules=rules)
            assert link["merchant_id"] == "m1"
            secret2 = (await register(client, merchant("m2", "shop2.example", click_param="m2click")))[
                "webhook_secret"
            ]
            stored = await app.ctx.links.get(link["code"])
            assert (stored.smart.rules[0].target.merchant_id, stored.smart.rules[0].target.click_param) == (
                "m2",
                "m2click",
            )
            await asyncio.sleep(0.3)  # the claim's link event reaches the worker's cache

            ios = (await client.get(f"/{link['code']}", headers={"user-agent": IPHONE})).headers["location"]
            desktop = (await client.get(f"/{link['code']}", headers={"user-agent": DESKTOP})).headers[
                "location"
            ]
            assert ios.startswith("https://shop2.example/app-landing?m2click=")
            ios_click = parse_qs(urlsplit(ios).query)["m2click"][0]
            desktop_click = parse_qs(urlsplit(desktop).query)["ct_click"][0]
            item = [{"sku": "S", "category": "c", "unit_price_minor": 10_000, "quantity": 1}]
            for merchant_id, secret, order_id, click_id in [
                ("m2", secret2, "O-ios", ios_click),
                ("m1", secret1, "O-desktop", desktop_click),
                ("m1", secret1, "O-wrong", ios_click),  # m1 cannot claim the click that went to m2
            ]:
                body, headers = webhook(secret, order_id, "order.created", order_id, click_id, item)
                response = await client.post(f"/webhooks/orders/{merchant_id}", content=body, headers=headers)
                assert response.status_code == 202, response.text
            await ingest_and_attribute(settings, clickhouse)

            rows = clickhouse.execute(
                f"SELECT click_id, merchant_id, dest_host, variant FROM {db}.clicks ORDER BY dest_host"
            )
            assert [tuple(r) for r in rows] == [
                (desktop_click, "m1", "shop1.example", -1),
                (ios_click, "m2", "shop2.example", -1),
            ]
            booked = clickhouse.execute(
                f"SELECT order_id, merchant_id, sum(amount_minor), any(reason) FROM {db}.commissions "
                "GROUP BY order_id, merchant_id ORDER BY order_id"
            )
            assert [tuple(r) for r in booked] == [
                ("O-desktop", "m1", 1000, ""),
                ("O-ios", "m2", 1000, ""),
                ("O-wrong", "m1", 0, "foreign_merchant"),
            ]

    asyncio.run(scenario())


def test_variants_on_clicks_and_rollup_and_patch_versions_in_links(
    settings, clickhouse, redis_client
) -> None:
    migrate(clickhouse, log=lambda *_: None)
    db = clickhouse.database
    settings = settings.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]})
    variants = [
        {"url": "https://a.example.com/", "weight": 1},
        {"url": "https://b.example.com/", "weight": 1},
    ]

    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "alice", "https://shop.example.com/p", variants=variants)
            code = link["code"]
            chosen = []
            for i in range(40):
                location = (
                    await client.get(f"/{code}", headers={"x-forwarded-for": f"81.2.69.{i + 1}"})
                ).headers["location"]
                chosen.append(0 if location.startswith("https://a.") else 1)
            for body in ({"max_clicks": 1000}, {"url": "https://shop.example.com/q", "variants": None}):
                assert (await client.patch(f"/api/links/{code}", json=body, headers=ADMIN)).status_code == 200
            await ingest_and_attribute(settings, clickhouse)

            per_variant = clickhouse.execute(
                f"SELECT variant, sum(clicks) FROM {db}.clicks_variants_daily WHERE code = %(code)s "
                "GROUP BY variant ORDER BY variant",
                {"code": code},
            )
            assert [tuple(r) for r in per_variant] == [(0, chosen.count(0)), (1, chosen.count(1))]
            assert 0 < chosen.count(0) < 40
            versions = clickhouse.execute(
                f"SELECT url, smart FROM {db}.links WHERE code = %(code)s ORDER BY updated_at_ms",
                {"code": code},
            )
            assert [r[0] for r in versions] == ["https://shop.example.com/p"] * 2 + [
                "https://shop.example.com/q"
            ]
            assert [json.loads(r[1]) for r in versions] == [
                {"variants": variants},
                {"variants": variants, "max_clicks": 1000},
                {"max_clicks": 1000},
            ]
            latest = clickhouse.execute(
                f"SELECT argMax(url, updated_at_ms), argMax(smart, updated_at_ms) FROM {db}.links "
                "WHERE code = %(code)s GROUP BY code",
                {"code": code},
            )
            assert tuple(latest[0]) == ("https://shop.example.com/q", '{"max_clicks":1000}')

    asyncio.run(scenario())
