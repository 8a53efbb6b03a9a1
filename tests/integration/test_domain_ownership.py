"""Host ownership through the real app and Redis: a registration that overlaps another merchant's domain
is refused naming the owner (every overlap shape, and two registrations at once), an admin transfer is
explicit, logged and recorded, links on a more specific domain never change hands, and an order on such
a link books for the right merchant end to end."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest

from attribution.merchants import Merchant
from core.migrate import migrate
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.test_end_to_end import BROWSER, ingest_and_attribute, webhook

pytestmark = pytest.mark.redis


def merchant(merchant_id: str, *domains: str, **extra) -> dict:
    return {
        "merchant_id": merchant_id,
        "name": merchant_id,
        "domains": list(domains),
        "currency": "EUR",
        "default_rate_bps": 1000,
        **extra,
    }


async def register(client, body: dict, status: int = 201) -> dict:
    response = await client.post("/api/merchants", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    return response.json()


async def owner_of_link(app, code: str) -> str | None:
    link = await app.ctx.links.get(code)
    return link.merchant_id if link else "missing"


@pytest.mark.parametrize(
    ("existing", "requested", "taken"),
    [
        ("shop1.brand.example", "shop1.brand.example", "shop1.brand.example"),  # the same domain
        ("shop1.brand.example", "brand.example", "shop1.brand.example"),  # a parent of it
        ("shop1.brand.example", "eu.shop1.brand.example", "shop1.brand.example"),  # a subdomain of it
        ("a.b.shop1.brand.example", "brand.example", "a.b.shop1.brand.example"),  # deeper nesting
        ("brand.example", "a.b.shop1.brand.example", "brand.example"),
    ],
)
def test_overlapping_registrations_are_refused_naming_the_owner(settings, existing, requested, taken) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            await register(client, merchant("m1", existing))
            link = await make_link(client, "alice", f"https://p.{existing}/x")
            refused = await register(client, merchant("m2", "other.example", requested), 409)
            assert refused["error"]["code"] == "domain_taken"
            assert "'m1'" in refused["error"]["message"] and repr(taken) in refused["error"]["message"]
            keys, redis = app.ctx.keys, app.ctx.redis
            # nothing of m2 was stored, not even its domain that overlaps nobody
            assert not await redis.exists(keys.merchant("m2"), keys.domain_owner("other.example"))
            assert (await redis.get(keys.domain_owner(existing))) == b"m1"
            assert await owner_of_link(app, link["code"]) == "m1"

    asyncio.run(scenario())


def test_siblings_and_look_alikes_do_not_overlap(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await register(client, merchant("m1", "shop1.brand.example"))
            await register(client, merchant("m2", "shop2.brand.example"))
            await register(client, merchant("m3", "myshop1.brand.example", "shop1.brand.example.net"))
            for url, owner in [
                ("https://shop1.brand.example/", "m1"),
                ("https://x.shop2.brand.example/", "m2"),
                ("https://myshop1.brand.example/", "m3"),
                ("https://brand.example/", None),
            ]:
                assert (await make_link(client, "alice", url))["merchant_id"] == owner

    asyncio.run(scenario())


def test_two_overlapping_registrations_at_once_one_wins(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            for round_ in range(5):
                parent, child = f"r{round_}.example", f"shop.r{round_}.example"
                answers = await asyncio.gather(
                    client.post("/api/merchants", json=merchant(f"p{round_}", parent), headers=ADMIN),
                    client.post("/api/merchants", json=merchant(f"c{round_}", child), headers=ADMIN),
                )
                assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]

    asyncio.run(scenario())


def test_transfer_is_explicit_logged_and_keeps_more_specific_domains(settings, caplog) -> None:
    """m1 owns shop1.brand.example and shop2.brand.example. With `transfer_domains`, m2 registers
    brand.example (its other hosts move to m2, shop1 and shop2 stay m1's), then m3 takes shop2 outright
    and carves eu.shop1 out of m1's shop1. Every link follows its most specific domain."""

    async def scenario():
        async with running_app(settings) as (app, client):
            await register(client, merchant("m1", "shop1.brand.example", "shop2.brand.example"))
            links = {
                name: (await make_link(client, "alice", url))["code"]
                for name, url in [
                    ("shop1", "https://shop1.brand.example/p"),
                    ("eu", "https://eu.shop1.brand.example/p"),
                    ("shop2", "https://shop2.brand.example/p"),
                    ("www", "https://www.brand.example/p"),
                ]
            }
            bad_flag = await register(
                client, {**merchant("m2", "brand.example"), "transfer_domains": "yes"}, 422
            )
            assert bad_flag["error"]["code"] == "invalid"
            m1_key = {"authorization": "Bearer " + (await client.post(
                "/api/keys", json={"merchant_id": "m1"}, headers=ADMIN)).json()["key"]}  # fmt: skip
            forbidden = await client.post(
                "/api/merchants",
                json={**merchant("m2", "brand.example"), "transfer_domains": True},
                headers=m1_key,
            )
            assert forbidden.status_code == 403

            with caplog.at_level(logging.WARNING, logger="clicktrail.merchants"):
                m2 = await register(client, {**merchant("m2", "brand.example"), "transfer_domains": True})
            assert {(t["taken"], t["owner"], t["kind"]) for t in m2["transferred"]} == {
                ("shop1.brand.example", "m1", "subdomain"),
                ("shop2.brand.example", "m1", "subdomain"),
            }
            assert m2["claimed_links"] == 1
            assert "shop1.brand.example" in caplog.text and "'m2'" in caplog.text
            expected = {"shop1": "m1", "eu": "m1", "shop2": "m1", "www": "m2"}
            assert {n: await owner_of_link(app, c) for n, c in links.items()} == expected

            await register(
                client,
                {**merchant("m3", "shop2.brand.example", "eu.shop1.brand.example"), "transfer_domains": True},
            )
            expected = {"shop1": "m1", "eu": "m3", "shop2": "m3", "www": "m2"}
            assert {n: await owner_of_link(app, c) for n, c in links.items()} == expected
            for url, owner in [
                ("https://shop1.brand.example/new", "m1"),
                ("https://a.eu.shop1.brand.example/new", "m3"),
                ("https://shop2.brand.example/new", "m3"),
                ("https://brand.example/new", "m2"),
            ]:
                assert (await make_link(client, "bob", url))["merchant_id"] == owner

            keys, redis = app.ctx.keys, app.ctx.redis
            m1 = msgspec.json.decode(await redis.get(keys.merchant("m1")), type=Merchant)
            assert m1.domains == ["shop1.brand.example"]  # shop2 moved to m3 outright
            log = [
                {k.decode(): v.decode() for k, v in fields.items()}
                for _, fields in await redis.xrange(keys.domain_transfers)
            ]
            assert [(e["domain"], e["taken"], e["kind"], e["from"], e["to"]) for e in log] == [
                ("brand.example", "shop1.brand.example", "subdomain", "m1", "m2"),
                ("brand.example", "shop2.brand.example", "subdomain", "m1", "m2"),
                ("eu.shop1.brand.example", "shop1.brand.example", "parent", "m1", "m3"),
                ("shop2.brand.example", "shop2.brand.example", "same", "m1", "m3"),
            ]
            assert all(int(e["at_ms"]) > 0 for e in log)

    asyncio.run(scenario())


def test_domains_registered_before_the_index_are_found(settings) -> None:
    """A domain stored by an earlier version (owner key and record only) still blocks an overlap."""

    async def scenario():
        async with running_app(settings) as (app, client):
            keys, redis = app.ctx.keys, app.ctx.redis
            old = Merchant("m1", "m1", ["shop1.old.example"], "EUR", 800)
            await redis.set(keys.merchant("m1"), msgspec.json.encode(old))
            await redis.sadd(keys.merchants, "m1")
            await redis.set(keys.domain_owner("shop1.old.example"), "m1")
            refused = await register(client, merchant("m2", "old.example"), 409)
            assert "'m1'" in refused["error"]["message"]

    asyncio.run(scenario())


@pytest.mark.clickhouse
def test_an_order_on_a_more_specific_domain_books_for_its_owner(settings, clickhouse, redis_client) -> None:
    """A link made before any merchant, then m1 registers shop1.brand.example (claiming it) and m2 takes
    brand.example by transfer. Clicks on m1's links (the early one and one made afterwards) and on m2's
    link each credit their own merchant's order; none is `foreign_merchant`."""
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (app, client):
            early = await make_link(client, "alice", "https://shop1.brand.example/p/1")
            secret1 = (await register(client, merchant("m1", "shop1.brand.example")))["webhook_secret"]
            secret2 = (await register(client, {**merchant("m2", "brand.example"), "transfer_domains": True}))[
                "webhook_secret"
            ]
            late = await make_link(client, "alice", "https://shop1.brand.example/p/2")
            other = await make_link(client, "bob", "https://www.brand.example/p/3")
            assert (early["merchant_id"], late["merchant_id"], other["merchant_id"]) == (None, "m1", "m2")
            assert await owner_of_link(app, early["code"]) == "m1"

            async def click(code: str) -> str:
                response = await client.get(f"/{code}", headers={"user-agent": BROWSER})
                assert response.status_code == 302
                return parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0]

            item = [{"sku": "S", "category": "c", "unit_price_minor": 10_000, "quantity": 1}]
            for merchant_id, secret, msg_id, order_id, code in [
                ("m1", secret1, "e1", "O-early", early["code"]),
                ("m1", secret1, "e2", "O-late", late["code"]),
                ("m2", secret2, "e3", "O-other", other["code"]),
            ]:
                body, headers = webhook(secret, msg_id, "order.created", order_id, await click(code), item)
                response = await client.post(f"/webhooks/orders/{merchant_id}", content=body, headers=headers)
                assert response.status_code == 202, response.text

            summary = await ingest_and_attribute(settings, clickhouse)
            assert summary.outcomes == {"credited": 3}
            rows = clickhouse.execute(
                f"SELECT order_id, merchant_id, sum(amount_minor), any(reason) FROM {clickhouse.database}"
                ".commissions GROUP BY order_id, merchant_id ORDER BY order_id"
            )
            assert [tuple(row) for row in rows] == [
                ("O-early", "m1", 1000, ""),
                ("O-late", "m1", 1000, ""),
                ("O-other", "m2", 1000, ""),
            ]

    asyncio.run(scenario())


def test_a_claim_never_overwrites_a_change_made_while_it_ran(settings) -> None:
    """A link disabled, and its host's owner changed, between the claim's read and its write: the claim
    retries on what is current instead of writing back the link it read (re-enabled, old owner)."""

    async def scenario():
        async with running_app(settings) as (app, client):
            keys, links = app.ctx.keys, app.ctx.links
            code = (await make_link(client, "alice", "https://shop.race.example/p"))["code"]
            await register(client, merchant("m1", "race.example"))
            calls = []

            async def resolve(pipe, hosts):
                calls.append(hosts)
                if len(calls) == 1:  # another writer commits while this claim is deciding
                    await links.disable(code)
                    await app.ctx.redis.set(keys.domain_owner("shop.race.example"), "m9")
                owned = {"shop.race.example": "m9"} if len(calls) > 1 else {"shop.race.example": "m1"}
                return {h: (owned[h], "ref") for h in hosts}

            assert await links.reconcile([code], resolve) == 1
            link = await links.get(code)
            assert len(calls) == 2
            assert (link.disabled, link.merchant_id, link.click_param) == (True, "m9", "ref")

    asyncio.run(scenario())


def test_a_registration_claims_every_host_a_link_sends_to(settings) -> None:
    """A smart link whose variant and rule go to other hosts than its main URL, and a link PATCHed onto a
    new host: a merchant registering those hosts claims each target on them, and only those (the main
    URL keeps its own owner). On a Redis Cluster the claim looked at the main host alone, and the PATCH
    answered 500."""

    async def scenario():
        async with running_app(settings) as (app, client):
            await register(client, merchant("main", "main.example"))
            smart = await make_link(
                client,
                "alice",
                "https://main.example/p",
                variants=[{"url": "https://main.example/a", "weight": 1},
                          {"url": "https://later.example/b", "weight": 1}],
                rules=[{"when": {"os": ["ios"]}, "url": "https://later.example/i"}],
            )  # fmt: skip
            moved = (await make_link(client, "bob", "https://main.example/q"))["code"]
            patched = await client.patch(
                f"/api/links/{moved}", json={"url": "https://shop.later.example/q"}, headers=ADMIN
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["merchant_id"] is None  # nobody owns later.example yet

            later = await register(client, merchant("later", "later.example"))
            assert later["claimed_links"] == 2
            link = await app.ctx.links.get(smart["code"])
            assert link.merchant_id == "main"
            assert [v.target.merchant_id for v in link.smart.variants] == ["main", "later"]
            assert [r.target.merchant_id for r in link.smart.rules] == ["later"]
            assert await owner_of_link(app, moved) == "later"
            again = await client.patch(f"/api/links/{moved}", json={"max_clicks": 9}, headers=ADMIN)
            assert again.status_code == 200 and again.json()["merchant_id"] == "later"

    asyncio.run(scenario())
