"""Redis refusing a request's command after the caller was let in (its memory full, a key of the wrong type):
a JSON 503 with Retry-After while the refusal can pass, a JSON 500 that names the storage when it cannot,
never the generic 500, and nothing half-written."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from core.keys import Keys
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.dashhelp import issue_key, sign_in
from tests.integration.merchantdash import merchant, setup


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _keys_of(r: Redis, prefix: str) -> set[bytes]:
    return {key async for key in r.scan_iter(match=prefix + "*", count=1000)}


def test_a_full_redis_answers_every_write_with_503_and_writes_nothing(settings, private_redis) -> None:
    own = settings.model_copy(update={"redis_url": private_redis.url})

    async def scenario():
        admin = Redis.from_url(private_redis.url)
        async with running_app(own) as (_, client):
            creator = _bearer(await issue_key(client, creator_id="alice"))
            link = await make_link(client, "alice", "https://shop.example.com/p")
            writes = [  # each a different store: links, keys, a link's change, merchants
                ("POST", "/api/links", creator, {"url": "https://shop.example.com/q", "creator_id": "alice"}),
                ("POST", "/api/keys", ADMIN, {"creator_id": "bob"}),
                ("PATCH", f"/api/links/{link['code']}", creator, {"url": "https://shop.example.com/r"}),
                ("POST", "/api/merchants", ADMIN, merchant("m9", "m9.example")),
            ]
            before = await _keys_of(admin, own.redis_prefix)
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
            try:
                for method, path, headers, body in writes:
                    answer = await client.request(method, path, json=body, headers=headers)
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.json()["error"]["code"] == "redis_unavailable", answer.text
                    assert answer.headers["retry-after"] == "1"
                assert await _keys_of(admin, own.redis_prefix) == before
            finally:
                await admin.config_set("maxmemory", "0")
            # Redis has room again: the same requests succeed
            for method, path, headers, body in writes:
                answer = await client.request(method, path, json=body, headers=headers)
                assert answer.status_code in (200, 201), (path, answer.text)
        await admin.aclose()

    asyncio.run(scenario())


def test_a_key_of_the_wrong_type_is_a_named_500_for_that_record_only(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            creator = _bearer(await issue_key(client, creator_id="alice"))
            broken = await make_link(client, "alice", "https://shop.example.com/p")
            fine = await make_link(client, "alice", "https://shop.example.com/q")
            r = Redis.from_url(settings.redis_url)
            record = Keys(settings.redis_prefix).link(broken["code"])
            await r.delete(record)
            await r.rpush(record, b"written by another program")  # WRONGTYPE for every link command
            await r.aclose()
            answer = await client.get(f"/api/links/{broken['code']}", headers=creator)
            assert answer.status_code == 500, answer.text
            assert answer.json()["error"]["code"] == "storage_error"
            assert (await client.get(f"/api/links/{fine['code']}", headers=creator)).status_code == 200

    asyncio.run(scenario())


def test_an_api_key_record_of_the_wrong_type_is_the_named_500_not_a_retry(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            alice = _bearer(await issue_key(client, creator_id="alice"))
            r = Redis.from_url(settings.redis_url)
            [record] = [key async for key in r.scan_iter(match=Keys(settings.redis_prefix).api_key("*"))]
            await r.delete(record)
            await r.set(record, b"written by another program")
            await r.aclose()
            answer = await client.get("/api/fx", headers=alice)
            assert answer.status_code == 500, answer.text
            assert answer.json()["error"]["code"] == "storage_error"
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 200

    asyncio.run(scenario())


def test_a_dashboard_page_over_a_key_of_the_wrong_type_is_a_500_page_not_a_retry(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            assert (await sign_in(client, made["brand"])).status_code == 303
            r = Redis.from_url(settings.redis_url)
            await r.set(Keys(settings.redis_prefix).merchant_codes("brand"), b"written by another program")
            await r.aclose()
            page = await client.get("/dash/merchants/brand/codes")
            assert page.status_code == 500 and "the error is logged" in page.text, page.text[:300]

    asyncio.run(scenario())
