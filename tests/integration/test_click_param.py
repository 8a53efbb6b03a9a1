"""Exactly one click parameter leaves us, through HTTP against the real Redis: planted spellings in the
viewer's query, a destination stored with the parameter in it, a merchant claim that changes the
parameter, and link records whose click parameter or URL cannot go into a header as stored."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from core.keys import Keys
from core.links import Link, encode_link
from redirector.linkcheck import header_safe
from redirector.querykeys import reads_as
from redirector.recorder import count_clicks
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.servehelp import ServeProcess

pytestmark = pytest.mark.redis

SPELLINGS = [
    "ct_click",
    "ct%5Fclick",
    "ct%5fclick",
    "%63t_click",
    "%2563t_click",
    "CT_CLICK",
    "ct.click",
    "ct+click",
    "ct_click[]",
    "ct_click%00",
    "x=1;ct_click",
]


def carried(location: str, param: str) -> list[str]:
    """Every query piece of a Location that a server could read as `param`."""
    query = location.partition("#")[0].partition("?")[2]
    return [piece for pair in query.split("&") for piece in pair.split(";") if reads_as(piece, param)]


def assert_one_click_id(location: str, param: str = "ct_click") -> str:
    assert header_safe(location), location
    found = carried(location, param)
    assert len(found) == 1 and found[0].startswith(f"{param}="), (location, found)
    return found[0].partition("=")[2]


def test_planted_click_ids_never_pass_in_any_spelling(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c1", "https://shop.example.com/p?ref=video")
            ids = []
            for spelling in SPELLINGS:
                response = await client.get(f"/{link['code']}?utm_source=yt&{spelling}=FORGED&z=%7E")
                assert response.status_code == 302, spelling
                location = response.headers["location"]
                ids.append(assert_one_click_id(location))
                assert "FORGED" not in location, (spelling, location)
                # the other pairs pass through as they came ("x=1" of "x=1;ct_click" too)
                assert location.startswith("https://shop.example.com/p?ref=video&utm_source=yt&")
                assert "&z=%7E&ct_click=" in location
            count, recorded = await count_clicks(app.ctx.redis, app.ctx.keys)
            assert count == len(SPELLINGS) and sorted(recorded) == sorted(ids)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://shop.example.com/p?ct_click=OLD&a=1", "https://shop.example.com/p?a=1"),
        ("https://shop.example.com/p?a=1&CT%5FCLICK=OLD#f", "https://shop.example.com/p?a=1#f"),
        ("https://shop.example.com/p?ct.click=OLD", "https://shop.example.com/p"),
        ("https://shop.example.com/p?ct_clicks=1", "https://shop.example.com/p?ct_clicks=1"),
    ],
)
def test_a_destination_is_stored_without_the_click_param(settings, url: str, stored: str) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "c2", url)
            assert link["url"] == stored
            response = await client.get(f"/{link['code']}")
            assert "OLD" not in response.headers["location"]
            assert_one_click_id(response.headers["location"])

    asyncio.run(scenario())


def test_a_claim_that_changes_the_param_strips_it_from_older_links(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "c3", "https://shop.brandx.example/p?REF=OLD&a=1")
            assert link["url"] == "https://shop.brandx.example/p?REF=OLD&a=1"  # ct_click was the param
            merchant = {
                "merchant_id": "brandx",
                "name": "Brand X",
                "domains": ["brandx.example"],
                "currency": "EUR",
                "default_rate_bps": 800,
                "click_param": "ref",
            }
            assert (await client.post("/api/merchants", json=merchant, headers=ADMIN)).status_code == 201
            for _ in range(100):  # the claim reaches the cache through the link-change stream
                location = (await client.get(f"/{link['code']}?ref=FORGED")).headers["location"]
                if "ref=" in location:
                    break
                await asyncio.sleep(0.05)
            assert "OLD" not in location and "FORGED" not in location, location
            assert_one_click_id(location, "ref")
            text = (await client.get("/metrics")).text
            assert 'clicktrail_redirect_fallbacks_total{reason="url_carried_click_param"} 1.0' in text

    asyncio.run(scenario())


BAD_PARAMS = ["ct_click\n", "ref\r\nSet-Cookie: a=b", "ref\x00", "ref\x7f", "r\u00e9f", "r\u2603f", ""]
BAD_URLS = [
    "https://s.example/p\n",
    "https://s.example/p?q=1\r\nSet-Cookie: a=b",
    "https://s.example/p\x00",
    "https://s.example/p\x7f",
    "https://s.example/caf\u00e9",
    "https://s.example/\u2603",
    "https://s.example/a b",
]


def store_raw(settings, records: list[Link]) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    for record in records:
        client.set(keys.link(record.code), encode_link(record))
    client.close()


def raw_link(code: str, url: str = "https://s.example/p", click_param: str = "ct_click") -> Link:
    return Link(
        code=code, url=url, creator_id="c4", host="s.example", created_at_ms=1, click_param=click_param
    )


def test_stored_links_unfit_for_a_header_still_get_a_well_formed_302(settings, redis_client) -> None:
    params = [raw_link(f"param{i}", click_param=p) for i, p in enumerate(BAD_PARAMS)]
    urls = [raw_link(f"url{i}", url=u) for i, u in enumerate(BAD_URLS)]
    store_raw(settings, [*params, *urls])

    async def scenario():
        async with running_app(settings) as (app, client):
            ids = []
            for record in [*params, *urls, *params]:  # the second pass is served from the cache
                response = await client.get(f"/{record.code}?x=1")
                assert response.status_code == 302
                assert response.headers["content-length"] == "0"
                ids.append(assert_one_click_id(response.headers["location"]))
            count, recorded = await count_clicks(app.ctx.redis, app.ctx.keys)
            assert count == len(ids) and sorted(recorded) == sorted(ids)
            text = (await client.get("/metrics")).text
            # counted once per link as it entered the cache, not per redirect
            assert f'clicktrail_redirect_fallbacks_total{{reason="bad_click_param"}} {len(params)}.0' in text
            assert f'clicktrail_redirect_fallbacks_total{{reason="bad_url_bytes"}} {len(urls)}.0' in text

    asyncio.run(scenario())


CORRUPT_RECORDS = [b"", b"not json", b"{}", b'{"code": 1}', b"\xff\xfe", b'{"code":"x","url":"u"}']


def test_a_corrupt_link_record_fails_alone_and_never_holds_its_batch(settings, redis_client) -> None:
    """Lookups are batched: before, one record that did not decode raised out of the batch and every
    request waiting on it hung. Now that code alone answers 503 (no cached copy) and the others go on."""
    keys = Keys(settings.redis_prefix)
    store_raw(settings, [raw_link(f"good{i}") for i in range(3)])
    for i, payload in enumerate(CORRUPT_RECORDS):
        redis_client.set(keys.link(f"bad{i}"), payload)
    codes = [f"good{i}" for i in range(3)] + [f"bad{i}" for i in range(len(CORRUPT_RECORDS))]
    redis_client.zadd(keys.creator_links("c4"), {code: 1 for code in codes})

    async def scenario():
        async with running_app(settings) as (_app, client):
            # all at once, so good and corrupt records share one batched lookup
            responses = await asyncio.wait_for(asyncio.gather(*(client.get(f"/{c}") for c in codes)), 10)
            for code, response in zip(codes, responses, strict=True):
                if code.startswith("good"):
                    assert response.status_code == 302, code
                else:
                    assert response.status_code == 503, code
                    assert response.json()["error"]["code"] == "unavailable"
            listed = await client.get("/api/links?creator_id=c4", headers=ADMIN)
            assert listed.status_code == 200
            assert sorted(link["code"] for link in listed.json()["links"]) == ["good0", "good1", "good2"]
            text = (await client.get("/metrics")).text
            assert f"clicktrail_link_lookup_errors_total {float(len(CORRUPT_RECORDS))}" in text

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_real_server_answers_a_newline_click_param_with_a_302(settings, redis_client) -> None:
    """Before the fix uvicorn refused the header and dropped the connection after the click was recorded:
    the viewer saw an empty reply."""
    store_raw(
        settings,
        [raw_link("nlparam", click_param="ct_click\n"), raw_link("nlurl", url="https://s.example/\n")],
    )
    server = ServeProcess(settings)
    try:
        for code in ("nlparam", "nlurl"):
            response = httpx.get(f"{server.url}/{code}", timeout=5)
            assert response.status_code == 302
            assert_one_click_id(response.headers["location"])
    finally:
        server.stop()


def test_a_query_too_long_to_pass_through_is_left_out_and_counted(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "c5", "https://shop.example.com/p")
            planted = "%2563t_click=F&" * 300  # 4,500 bytes of keys that each take every decoding round
            response = await client.get(f"/{link['code']}?{planted}")
            assert response.status_code == 302
            location = response.headers["location"]
            assert location.startswith("https://shop.example.com/p?ct_click=")
            assert_one_click_id(location)
            fitting = await client.get(f"/{link['code']}?{planted[: 15 * 266]}x=1")
            assert fitting.headers["location"].startswith("https://shop.example.com/p?x=1&ct_click=")
            text = (await client.get("/metrics")).text
            assert 'clicktrail_redirect_fallbacks_total{reason="query_too_long"} 1.0' in text

    asyncio.run(scenario())
