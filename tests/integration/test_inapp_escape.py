"""`open_in: "browser"` through the real app and Redis (and ClickHouse after ingest): an in-app browser
gets the escape page, carrying exactly the destination a 302 would have sent, and its click is recorded
once, naming the app; HEAD, ordinary browsers and other links get the usual 302."""

from __future__ import annotations

import asyncio
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from core.links import Link, encode_link
from core.migrate import migrate
from redirector.click import decode_batch
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = pytest.mark.redis

TIKTOK = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240105.004; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/121.0.6167.143 Mobile Safari/537.36 musical_ly_2023303040 "
    "JsSdk/1.0 BytedanceWebview/d8a21c6"
)
INSTAGRAM_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/22B83 Instagram 354.0.0.29.90 (iPhone12,8; iOS 18_1; en_US; en; scale=2.00; 750x1334; 654111336)"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)


def hrefs(html: str) -> dict[str, str]:
    return {m[0]: unescape(m[1]) for m in re.findall(r'<a id="(\w+)" href="([^"]*)"', html)}


async def stream_clicks(app) -> list:
    clicks = []
    for _, fields in await app.ctx.redis.xrange(app.ctx.keys.clicks):
        clicks.extend(decode_batch(fields[b"c"]))
    return clicks


def test_inapp_browser_gets_the_page_others_the_302(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            url = 'https://shop.example.com/p/42?x="<q>"#reviews'
            link = await make_link(client, "cr1", url, open_in="browser")
            assert link["open_in"] == "browser"
            code = link["code"]
            page = await client.get(f"/{code}?utm_source=tt", headers={"user-agent": TIKTOK})
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["cache-control"] == "private, no-store"
            assert page.headers["content-security-policy"].startswith(
                "default-src 'none'; script-src 'sha256-"
            )
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "no-referrer"
            links = hrefs(page.text)
            here = links["here"]
            assert here.startswith("https://shop.example.com/p/42?x=%22%3Cq%3E%22&utm_source=tt&ct_click=")
            assert here.endswith("#reviews") and f"/{code}" not in page.text  # never back through us
            assert (
                links["open"].startswith("intent://shop.example.com/p/42?")
                and "S.browser_fallback_url=" in links["open"]
            )
            ios = hrefs((await client.get(f"/{code}", headers={"user-agent": INSTAGRAM_IOS})).text)
            assert ios["open"] == "x-safari-" + ios["here"]

            plain = await client.get(f"/{code}?utm_source=tt", headers={"user-agent": SAFARI})
            head = await client.head(f"/{code}", headers={"user-agent": TIKTOK})
            assert plain.status_code == head.status_code == 302 and not head.content
            default = await make_link(client, "cr1", "https://shop.example.com/p/43")
            assert default["open_in"] == "default"
            other = await client.get(f"/{default['code']}", headers={"user-agent": TIKTOK})
            assert other.status_code == 302

            clicks = {c.click_id: c for c in await stream_clicks(app)}
            assert len(clicks) == 5  # one per request, the page's included; none by the page itself

            def click_of(location: str):
                return clicks[parse_qs(urlsplit(location.split("#")[0]).query)["ct_click"][0]]

            assert click_of(here).inapp == "tiktok" and not click_of(here).is_head
            assert click_of(ios["here"]).inapp == "instagram"
            assert click_of(plain.headers["location"]).inapp == ""
            assert click_of(head.headers["location"]).inapp == ""  # HEAD: no page, no app
            assert click_of(other.headers["location"]).inapp == ""  # the link did not ask
            metrics = (await client.get("/metrics")).text
            assert 'clicktrail_redirects_total{method="GET",status="200"} 2.0' in metrics

    asyncio.run(scenario())


def test_open_in_is_validated_stored_and_old_links_read_as_default(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            for bad in ("Browser", "app", "", 1, True, [], {"x": 1}):
                response = await client.post(
                    "/api/links",
                    json={"url": "https://shop.example.com/", "creator_id": "cr1", "open_in": bad},
                    headers=ADMIN,
                )
                assert response.status_code == 422, bad
                assert response.json()["error"]["code"] == "invalid_open_in"
            assert await app.ctx.redis.keys(app.ctx.keys.link("*")) == []  # nothing half-written
            link = await make_link(client, "cr1", "https://shop.example.com/", open_in=None)
            fetched = await client.get(f"/api/links/{link['code']}", headers=ADMIN)
            assert fetched.json()["open_in"] == "default"

            # A record stored before the field existed (no open_in key at all) reads as "default".
            old = Link("oldcode1", "https://shop.example.com/o", "cr1", "shop.example.com", 1_700_000_000_000)
            fields = msgspec.structs.asdict(old)
            del fields["open_in"]
            await app.ctx.redis.set(app.ctx.keys.link("oldcode1"), msgspec.msgpack.encode(fields))
            assert encode_link(old) != msgspec.msgpack.encode(fields)
            listed = await client.get("/api/links/oldcode1", headers=ADMIN)
            assert listed.json()["open_in"] == "default"
            assert (await client.get("/oldcode1", headers={"user-agent": TIKTOK})).status_code == 302

    asyncio.run(scenario())


@pytest.mark.clickhouse
def test_the_app_reaches_clickhouse(settings, clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)

    async def scenario() -> str:
        async with running_app(settings) as (_app, client):
            link = await make_link(client, "cr1", "https://shop.example.com/p/1", open_in="browser")
            await client.get(f"/{link['code']}", headers={"user-agent": SAFARI})
            page = await client.get(f"/{link['code']}", headers={"user-agent": TIKTOK})
            return parse_qs(urlsplit(hrefs(page.text)["here"]).query)["ct_click"][0]

    click_id = asyncio.run(scenario())
    registry = CollectorRegistry()
    assert run_streams(settings, stream_specs(settings), consumer="t", registry=registry, once=True) == 0
    rows = clickhouse.execute(f"SELECT click_id, inapp FROM {clickhouse.database}.clicks ORDER BY inapp")
    assert [row[1] for row in rows] == ["", "tiktok"] and rows[1][0] == click_id
