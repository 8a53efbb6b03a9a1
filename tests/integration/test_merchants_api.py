"""Merchant, catalog and rate API against the real app and Redis: late domain claims attach earlier
links, every rate change is a new version, the catalog shows the rate a creator would earn, and keys stay
within their merchant."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from attribution.rates import RateStore
from core.keys import Keys
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.unit.test_urls import BAD_A_LABELS

pytestmark = pytest.mark.redis

MERCHANT = {
    "merchant_id": "brand1",
    "name": "Brand One",
    "domains": ["Shop.Brand1.example"],
    "currency": "EUR",
    "default_rate_bps": 800,
    "lock_days": 14,
}
PRODUCTS = [
    {
        "sku": "SKU-1",
        "title": "Trail shoe",
        "url": "https://shop.brand1.example/p/1",
        "category": "shoes",
        "price_minor": 5990,
        "currency": "EUR",
        "rate_bps": 1500,
    },
    {
        "sku": "SKU-2",
        "title": "Cap",
        "url": "https://shop.brand1.example/p/2",
        "category": "hats",
        "price_minor": 1999,
        "currency": "EUR",
    },
]


async def key_for(client, **scope) -> dict:
    response = await client.post("/api/keys", json=scope, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"authorization": f"Bearer {response.json()['key']}"}


def test_merchant_lifecycle(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            earlier = await make_link(client, "alice", "https://shop.brand1.example/p/1")
            assert earlier["merchant_id"] is None
            assert (
                await client.post("/api/keys", json={"merchant_id": "brand1"}, headers=ADMIN)
            ).status_code == 404
            created = await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)
            assert created.status_code == 201, created.text
            body = created.json()
            assert body["domains"] == ["shop.brand1.example"] and body["attribution_window_days"] == 30
            assert body["claimed_links"] == 1
            claimed = (await client.get(f"/api/links/{earlier['code']}", headers=ADMIN)).json()
            assert claimed["merchant_id"] == "brand1"
            assert (await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)).status_code == 409
            thief = {**MERCHANT, "merchant_id": "brand2"}
            taken = await client.post("/api/merchants", json=thief, headers=ADMIN)
            assert taken.status_code == 409 and taken.json()["error"]["code"] == "domain_taken"
            bad = await client.post(
                "/api/merchants", json={**MERCHANT, "merchant_id": "b3", "domains": ["x"]}, headers=ADMIN
            )
            assert bad.status_code == 422
            # A display name is plain text of bounded length (core/validate.py CONTROL_CHARS), as every
            # stored name is: it is shown on pages and in statements.
            for name in (
                "Evil\x00Name",
                "a\r\nb",
                "line\u2028sep",
                "para\u2029sep",
                "del\x7f",
                "x" * 201,
                "  ",
            ):
                refused = await client.post(
                    "/api/merchants",
                    json={**MERCHANT, "merchant_id": "b4", "domains": ["b4.example"], "name": name},
                    headers=ADMIN,
                )
                assert refused.status_code == 422, (name, refused.text)
            # none was stored: no key can be issued for it
            no_key = await client.post("/api/keys", json={"merchant_id": "b4"}, headers=ADMIN)
            assert no_key.status_code == 404

            brand = await key_for(client, merchant_id="brand1")
            alice = await key_for(client, creator_id="alice")
            assert (await client.post("/api/merchants", json=thief, headers=brand)).status_code == 403
            put = await client.put("/api/merchants/brand1/catalog", json=PRODUCTS, headers=brand)
            assert put.status_code == 200 and put.json()["rate_version"] == 2
            again = await client.put("/api/merchants/brand1/catalog", json=PRODUCTS, headers=brand)
            assert again.json()["rate_version"] == 2  # unchanged rates: no new version
            assert (
                await client.put("/api/merchants/brand1/catalog", json=PRODUCTS, headers=alice)
            ).status_code == 403
            rates = {"default_rate_bps": 500, "categories": {"hats": 700}, "creators": {"alice": 2000}}
            put = await client.put("/api/merchants/brand1/rates", json=rates, headers=brand)
            assert put.status_code == 200 and put.json()["rate_version"] == 3
            over = await client.put(
                "/api/merchants/brand1/rates", json={"default_rate_bps": 10_001}, headers=brand
            )
            assert over.status_code == 422

            bob = await key_for(client, creator_id="bob")
            shown = (await client.get("/api/catalog?merchant_id=brand1", headers=bob)).json()["products"]
            assert [(p["sku"], p["earn_rate_bps"], p["earn_rule"]) for p in shown] == [
                ("SKU-1", 1500, "sku"),
                ("SKU-2", 700, "category"),
            ]
            assert shown[0]["earn_per_unit_minor"] == 898  # 5990 × 15 % = 898.5 → 898 (half-even)
            mine = (await client.get("/api/catalog?q=cap", headers=alice)).json()["products"]
            assert [(p["sku"], p["earn_rate_bps"], p["earn_rule"]) for p in mine] == [
                ("SKU-2", 2000, "creator")
            ]

            rotated = await client.post("/api/merchants/brand1/secrets", headers=brand)
            assert rotated.status_code == 201
            assert (await client.post("/api/merchants/brand2/secrets", headers=brand)).status_code == 403

        r = Redis.from_url(settings.redis_url)
        versions = await RateStore(r, Keys(settings.redis_prefix)).versions("brand1")
        await r.aclose()
        assert [(v.version, v.default_bps, v.skus, v.creators) for v in versions] == [
            (1, 800, {}, {}),
            (2, 800, {"SKU-1": 1500}, {}),
            (3, 500, {"SKU-1": 1500}, {"alice": 2000}),
        ]
        assert versions[0].effective_ms <= versions[1].effective_ms <= versions[2].effective_ms

    asyncio.run(scenario())


def test_a_domain_with_a_broken_punycode_label_is_refused_and_stores_nothing(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            for i, label in enumerate(BAD_A_LABELS):
                body = {**MERCHANT, "merchant_id": f"p{i}", "domains": [f"shop.{label}.example"]}
                refused = await client.post("/api/merchants", json=body, headers=ADMIN)
                assert refused.status_code == 422, (label, refused.text)
                assert refused.json()["error"]["code"] == "invalid", label
            assert not await app.ctx.redis.keys(app.ctx.keys.prefix + "merchant*")
            assert not await app.ctx.redis.keys(app.ctx.keys.prefix + "domain*")
            body = {**MERCHANT, "merchant_id": "p9", "domains": ["XN--BCHER-KVA.example"]}
            created = await client.post("/api/merchants", json=body, headers=ADMIN)
            assert created.status_code == 201 and created.json()["domains"] == ["xn--bcher-kva.example"]
            link = await make_link(client, "alice", "https://bücher.example/buch")
            assert link["merchant_id"] == "p9"

    asyncio.run(scenario())


def test_a_parent_domain_covers_its_subdomains(settings) -> None:
    """Registering brand.example claims earlier links on shop.brand.example (with the merchant's own click
    parameter), and links made afterwards on any subdomain belong to it at once."""

    async def scenario():
        async with running_app(settings) as (_, client):
            earlier = await make_link(client, "alice", "https://shop.parent.example/p/1")
            other = await make_link(client, "alice", "https://notparent.example/p/1")
            merchant = {
                **MERCHANT,
                "merchant_id": "parent",
                "domains": ["parent.example"],
                "click_param": "ref",
            }
            created = await client.post("/api/merchants", json=merchant, headers=ADMIN)
            assert created.status_code == 201, created.text
            assert created.json()["claimed_links"] == 1
            claimed = (await client.get(f"/api/links/{earlier['code']}", headers=ADMIN)).json()
            assert claimed["merchant_id"] == "parent"
            assert (await client.get(f"/api/links/{other['code']}", headers=ADMIN)).json()[
                "merchant_id"
            ] is None
            redirect = await client.get(f"/{earlier['code']}")
            assert "?ref=" in redirect.headers["location"] and "ct_click" not in redirect.headers["location"]
            later = await make_link(client, "bob", "https://deep.shop.parent.example/x")
            assert later["merchant_id"] == "parent"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("target", "method"),
    [
        ("attribution.rates.RateStore", "set_rates"),
        ("attribution.merchants.MerchantStore", "add_secret"),
        ("attribution.rates.RateStore", "append"),
    ],
)
def test_a_failure_after_registration_leaves_no_merchant_without_secret_or_rates(
    settings, monkeypatch, target: str, method: str
) -> None:
    """A registration is the merchant, its domains, its first rate version and its first secret in one
    transaction: a Redis error in a later step cannot leave a merchant that exists (a retry is a 409) but
    cannot verify a webhook or be attributed."""
    import importlib

    module, cls = target.rsplit(".", 1)

    async def broken(*args, **kwargs):
        raise ConnectionError("redis went away")

    async def scenario():
        async with running_app(settings) as (app, client):
            monkeypatch.setattr(getattr(importlib.import_module(module), cls), method, broken)
            body = {**MERCHANT, "merchant_id": "atomic1", "domains": ["atomic1.example"]}
            try:
                response = await client.post("/api/merchants", json=body, headers=ADMIN)
                status = response.status_code
            except ConnectionError:
                status = 500
            monkeypatch.undo()
            ctx = app.ctx
            stored = await ctx.merchants.get("atomic1")
            secrets_ = await ctx.merchants.active_secrets("atomic1", 0)
            rates = await RateStore(ctx.redis, ctx.keys).current_head("atomic1")
            if stored is None:
                assert status >= 400 and not secrets_ and rates is None
            else:
                assert status == 201 and secrets_ == [response.json()["webhook_secret"]], status
                assert rates is not None and rates.default_bps == MERCHANT["default_rate_bps"]

    asyncio.run(scenario())


@pytest.mark.parametrize("links", [1, 3])
def test_a_retried_registration_finishes_a_claim_cut_short(settings, monkeypatch, links: int) -> None:
    """Older links are claimed after the registration commits. If that claim fails (Redis went away), the
    merchant exists but its older links do not carry it yet: the admin's retry of the same registration
    (409 merchant_exists) finishes the claim."""
    from core.links import LinkStore

    async def broken(*args, **kwargs):
        raise ConnectionError("redis went away")

    async def scenario():
        async with running_app(settings) as (app, client):
            codes = [
                (await make_link(client, "c1", f"https://shop.retry1.example/p{i}"))["code"]
                for i in range(links)
            ]
            body = {**MERCHANT, "merchant_id": "retry1", "domains": ["retry1.example"]}
            monkeypatch.setattr(LinkStore, "claim_host", broken)
            try:
                first = (await client.post("/api/merchants", json=body, headers=ADMIN)).status_code
            except ConnectionError:
                first = 500
            monkeypatch.undo()
            assert first == 500
            assert {(await app.ctx.links.get(c)).merchant_id for c in codes} == {None}
            again = await client.post("/api/merchants", json=body, headers=ADMIN)
            assert again.status_code == 409 and again.json()["error"]["code"] == "merchant_exists"
            assert {(await app.ctx.links.get(c)).merchant_id for c in codes} == {"retry1"}

    asyncio.run(scenario())
