"""Link management API: validation, codes, and key scoping against the real Redis."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.unit.test_urls import BAD_A_LABELS, GOOD_A_LABELS

pytestmark = pytest.mark.redis


async def creator_key(client, creator_id: str) -> dict:
    response = await client.post("/api/keys", json={"creator_id": creator_id}, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["key"].startswith("ctk_")
    return {"authorization": f"Bearer {response.json()['key']}"}


def test_creator_key_is_scoped_to_its_creator(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            alice, bob = await creator_key(client, "alice"), await creator_key(client, "bob")
            own = await client.post(
                "/api/links", json={"url": "https://shop.example.com/a", "creator_id": "alice"}, headers=alice
            )
            assert own.status_code == 201
            code = own.json()["code"]
            assert len(code) >= 7 and own.json()["short_url"].endswith("/" + code)
            assert own.json()["merchant_id"] is None
            foreign = await client.post(
                "/api/links", json={"url": "https://shop.example.com/a", "creator_id": "alice"}, headers=bob
            )
            assert foreign.status_code == 403
            assert (await client.get(f"/api/links/{code}", headers=bob)).status_code == 403
            assert (await client.delete(f"/api/links/{code}", headers=bob)).status_code == 403
            assert (await client.get("/api/links?creator_id=alice", headers=bob)).status_code == 403
            listed = await client.get("/api/links?creator_id=alice", headers=alice)
            assert [link["code"] for link in listed.json()["links"]] == [code]
            assert (await client.get(f"/api/links/{code}", headers=alice)).json()[
                "url"
            ] == "https://shop.example.com/a"
            # a creator key cannot issue keys
            assert (
                await client.post("/api/keys", json={"creator_id": "x"}, headers=alice)
            ).status_code == 403

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Basic abc"}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": "Bearer ctk_unknown"}, 401),
    ],
)
def test_bad_tokens_are_refused(settings, headers, status) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            response = await client.post(
                "/api/links", json={"url": "https://a.example.com/", "creator_id": "c"}, headers=headers
            )
            assert response.status_code == status
            assert response.json()["error"]["code"] == "unauthorized"

    asyncio.run(scenario())


def test_admin_api_refuses_everything_without_a_configured_token(settings) -> None:
    async def scenario():
        async with running_app(settings.model_copy(update={"admin_token": None})) as (_, client):
            response = await client.post("/api/keys", json={"creator_id": "c"}, headers=ADMIN)
            assert response.status_code == 401

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"url": "javascript:alert(1)", "creator_id": "c"}, 422, "invalid_url.scheme"),
        ({"url": "https://u:p@example.com/", "creator_id": "c"}, 422, "invalid_url.credentials"),
        ({"url": "https://example.com/" + "a" * 2100, "creator_id": "c"}, 422, "invalid_url.too_long"),
        ({"url": "http://127.0.0.1:8000/", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "http://[::ffff:127.0.0.1]/", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "http://169.254.169.254/", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "https://10.1.2.3/admin", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "https://localhost./", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "https://admin.localhost/", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "https://0x7f.1/", "creator_id": "c"}, 422, "invalid_url.non_public_host"),
        ({"url": "https://example.com/", "creator_id": "bad id"}, 422, "invalid_id"),
        ({"url": "https://example.com/", "creator_id": "c", "code": "ab"}, 422, "invalid_code"),
        ({"url": "https://example.com/", "creator_id": "c", "code": "has space"}, 422, "invalid_code"),
        ({"url": "https://example.com/", "creator_id": "c", "code": "metrics"}, 422, "reserved_code"),
        (["not", "an", "object"], 400, "malformed_body"),
    ],
)
def test_bad_links_are_refused(settings, body, status, code) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            response = await client.post("/api/links", json=body, headers=ADMIN)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
            assert not await app.ctx.redis.keys(app.ctx.keys.prefix + "link:*")

    asyncio.run(scenario())


def test_malformed_json_is_a_400(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            response = await client.post("/api/links", content=b'{"url": ', headers=ADMIN)
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "malformed_json"

    asyncio.run(scenario())


def test_custom_code_and_idn(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "c", "https://bücher.example/buch", code="Buch_1")
            assert link["url"] == "https://xn--bcher-kva.example/buch"
            response = await client.get("/Buch_1")
            assert response.headers["location"].startswith("https://xn--bcher-kva.example/buch?ct_click=")

    asyncio.run(scenario())


def test_a_punycode_host_meets_the_rules_of_its_unicode_form(settings) -> None:
    """A broken punycode label is a 422 naming it, nothing stored; a valid one and its Unicode form make
    links to one host."""

    async def scenario():
        async with running_app(settings) as (app, client):
            for label in BAD_A_LABELS:
                body = {"url": f"https://shop.{label}.example/p", "creator_id": "c"}
                response = await client.post("/api/links", json=body, headers=ADMIN)
                assert response.status_code == 422, (label, response.text)
                error = response.json()["error"]
                assert error["code"] == "invalid_url.host" and label.lower() in error["message"], label
            assert not await app.ctx.redis.keys(app.ctx.keys.prefix + "link:*")
            for a_label, u_label in GOOD_A_LABELS:
                given = await make_link(client, "c", f"https://shop.{a_label}.example/p")
                typed = await make_link(client, "c", f"https://shop.{u_label}.example/p")
                assert given["url"] == typed["url"] == f"https://shop.{a_label.lower()}.example/p"

    asyncio.run(scenario())
