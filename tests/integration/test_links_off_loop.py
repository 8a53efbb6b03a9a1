"""A creator's link list is decoded and encoded off the event loop and read from Redis in slices: a list
of links near the size limit (smart links of many rules with long URLs) held the loop its server's
redirects share 0.25-0.4 s (an adversarial pass). The bound is a share of the same work timed here."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.links import Link, LinkStore, Rule, Smart, Target, link_json
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.test_terms_off_loop import _longest_hold

pytestmark = [pytest.mark.redis]
LINKS, RULES = 1000, 20
URL = "https://shop.example.com/p?" + "x" * 200


def big_link(n: int) -> Link:
    countries = ("DE", "FR", "GB", "IE", "NL", "BE", "AT", "CH")
    rules = tuple(
        Rule(Target(f"{URL}{r}", "shop.example.com"), os=("ios", "android"), country=countries)
        for r in range(RULES)
    )
    return Link(f"big{n:05d}", URL, "alice", "shop.example.com", n + 1, smart=Smart(rules=rules))


def test_a_list_of_large_links_does_not_hold_the_event_loop(settings) -> None:
    keys = Keys(settings.redis_prefix)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        store = LinkStore(r, keys)
        for n in range(LINKS):
            assert await store.create(big_link(n))
        await r.aclose()
        async with running_app(settings) as (app, client):
            hold_s, response = await _longest_hold(client.get("/api/links?creator_id=alice", headers=ADMIN))
            assert response.status_code == 200
            listed = response.json()["links"]
            assert [link["code"] for link in listed] == [f"big{n:05d}" for n in reversed(range(LINKS))]
            assert listed[0] == orjson.loads(
                orjson.dumps(link_json(big_link(LINKS - 1), settings.public_url))
            )
            # The same work on the loop: the read, the decode, the JSON (what held it before).
            started = time.perf_counter()
            links = await app.ctx.links.by_creator("alice")
            orjson.dumps({"links": [link_json(link, settings.public_url) for link in links]})
            work_s = time.perf_counter() - started
        print(
            f"held {hold_s:.4f} s; the same work on the loop {work_s:.4f} s, {len(response.content):,} bytes"
        )
        assert hold_s < work_s / 3, (hold_s, work_s)

    asyncio.run(scenario())


def test_the_list_reads_its_slices_on_a_redis_cluster(cluster_settings, cluster_redis) -> None:
    """On a cluster the records are spread over the slots: each slice is one pipeline."""

    async def scenario() -> None:
        async with running_app(cluster_settings) as (app, client):
            for n in range(250):  # three slices, the last one short
                assert await app.ctx.links.create(Link(f"c{n:05d}", URL, "alice", "shop.example.com", n + 1))
            response = await client.get("/api/links?creator_id=alice", headers=ADMIN)
            assert response.status_code == 200
            assert [link["code"] for link in response.json()["links"]] == [
                f"c{n:05d}" for n in reversed(range(250))
            ]

    asyncio.run(scenario())
