"""The redirect against the real Redis: every 302 is exactly one recorded click with the same id."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from core.clickid import ClickIds
from core.keys import Keys
from redirector.click import decode_batch
from redirector.recorder import count_clicks
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = pytest.mark.redis


def click_id_of(location: str, param: str = "ct_click") -> str:
    return parse_qs(urlsplit(location).query)[param][-1]


async def stream_clicks(app) -> list:
    ctx = app.ctx
    clicks = []
    for _, fields in await ctx.redis.xrange(ctx.keys.clicks):
        clicks.extend(decode_batch(fields[b"c"]))
    return clicks


def test_every_302_is_one_recorded_click(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "creator-1", "https://shop.example.com/p/42?ref=video")
            responses = await asyncio.gather(*(client.get(f"/{link['code']}") for _ in range(300)))
            assert {r.status_code for r in responses} == {302}
            ids = [click_id_of(r.headers["location"]) for r in responses]
            assert len(set(ids)) == 300
            count, recorded = await count_clicks(app.ctx.redis, app.ctx.keys)
            assert count == 300 and sorted(recorded) == sorted(ids)
            verifier = ClickIds(settings.secret_bytes)
            assert all(verifier.verify(i) for i in ids)
            r = responses[0]
            assert r.headers["cache-control"] == "private, no-store"
            assert r.headers["location"].startswith("https://shop.example.com/p/42?ref=video&ct_click=")
            clicks = await stream_clicks(app)
            assert {c.creator_id for c in clicks} == {"creator-1"}
            assert {c.dest_host for c in clicks} == {"shop.example.com"}
            assert all(c.ip_prefix == "203.0.113.0/24" and c.ip_hash for c in clicks)
            # batching: fewer stream entries than clicks under concurrency
            assert await app.ctx.redis.xlen(app.ctx.keys.clicks) < 300  # group commit shared writes

    asyncio.run(scenario())


def test_head_is_recorded_as_head_and_query_passes_through(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c2", "https://shop.example.com/p#reviews")
            head = await client.head(f"/{link['code']}?utm_source=yt")
            get = await client.get(
                f"/{link['code']}?utm_source=yt&ct_click=FORGED",
                headers={"user-agent": "UA/1", "referer": "https://youtube.com/x"},
            )
            assert head.status_code == get.status_code == 302
            loc = get.headers["location"]
            assert loc.startswith("https://shop.example.com/p?utm_source=yt&ct_click=")
            assert loc.endswith("#reviews") and "FORGED" not in loc
            clicks = {c.click_id: c for c in await stream_clicks(app)}
            head_click = clicks[click_id_of(head.headers["location"].split("#")[0])]
            get_click = clicks[click_id_of(loc.split("#")[0])]
            assert head_click.is_head and not get_click.is_head
            assert (get_click.user_agent, get_click.referer) == ("UA/1", "https://youtube.com/x")

    asyncio.run(scenario())


def test_unknown_and_disabled_codes_record_nothing(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c3", "https://shop.example.com/x", code="my-code")
            assert (await client.get("/nope-nope")).status_code == 404
            assert (await client.get("/x")).status_code == 404  # too short to be a code
            assert (await client.get("/bad%20code")).status_code == 404
            gone = await client.delete(f"/api/links/{link['code']}", headers=ADMIN)
            assert gone.status_code == 200 and gone.json()["disabled"] is True
            response = await client.get("/my-code")
            assert response.status_code == 410
            assert response.json()["error"]["code"] == "link_disabled"
            assert (await client.head("/my-code")).status_code == 410
            assert await count_clicks(app.ctx.redis, app.ctx.keys) == (0, [])
            # the code stays taken
            again = await client.post(
                "/api/links",
                json={"url": "https://a.example.com/", "creator_id": "c3", "code": "my-code"},
                headers=ADMIN,
            )
            assert again.status_code == 409

    asyncio.run(scenario())


def test_a_change_reaches_every_worker_quickly(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client_a), running_app(settings) as (__, client_b):
            link = await make_link(client_a, "c4", "https://shop.example.com/y")
            assert (await client_b.get(f"/{link['code']}")).status_code == 302  # now cached in b
            await client_a.delete(f"/api/links/{link['code']}", headers=ADMIN)
            for _ in range(100):
                if (await client_b.get(f"/{link['code']}")).status_code == 410:
                    return
                await asyncio.sleep(0.05)
            pytest.fail("worker b still redirects a disabled link after 5 s")

    asyncio.run(scenario())


def test_metrics_count_redirects_and_clicks(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "c5", "https://shop.example.com/z")
            for _ in range(3):
                await client.get(f"/{link['code']}")
            await client.get("/unknown-code")
            text = (await client.get("/metrics")).text
            assert 'clicktrail_redirects_total{method="GET",status="302"} 3.0' in text
            assert 'clicktrail_redirects_total{method="GET",status="404"} 1.0' in text
            assert 'clicktrail_clicks_total{outcome="committed"} 3.0' in text
            assert "clicktrail_redirect_latency_seconds_bucket" in text
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["recording"] == "redis"

    asyncio.run(scenario())


def test_keys_prefix_isolated(settings) -> None:
    assert Keys(settings.redis_prefix).clicks.startswith("ct:test:")


@pytest.mark.parametrize(
    "lines, prefix",
    [
        # a proxy that adds its own line: the client is in the first, the last holds only proxies
        (["192.0.2.9", "203.0.113.5"], "192.0.2.0/24"),
        (["198.51.100.1", "192.0.2.9, 203.0.113.5"], "192.0.2.0/24"),
        (["192.0.2.9"], "192.0.2.0/24"),
        (["203.0.113.5", "203.0.113.6"], "203.0.113.0/24"),  # only proxies: the peer
        (["192.0.2.9:5678"], "192.0.2.0/24"),  # hops with ports, a trusted one too
        (["192.0.2.9, 203.0.113.5:80"], "192.0.2.0/24"),
        (["[2001:db8::9]:443"], "2001:db8::/48"),
    ],
)
def test_forwarded_for_lines_count_in_order_without_ports(settings, lines: list[str], prefix: str) -> None:
    trusted = settings.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]})  # the test client's

    async def scenario():
        async with running_app(trusted) as (app, client):
            link = await make_link(client, "c1", "https://shop.example.com/p")
            headers = [("x-forwarded-for", line) for line in lines]
            assert (await client.get(f"/{link['code']}", headers=headers)).status_code == 302
            assert [c.ip_prefix for c in await stream_clicks(app)] == [prefix]

    asyncio.run(scenario())
