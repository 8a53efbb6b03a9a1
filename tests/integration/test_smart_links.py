"""Smart links through real HTTP against the real Redis: rules by OS, device and country (header and
offline lookup), app deep links, sticky variants on the click, expiry by time and by `max_clicks`, PATCH,
refusals, and the merchant of the destination actually chosen."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from redirector.click import decode_batch
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = pytest.mark.redis

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.6045.163 Mobile Safari/537.36"
)
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0"

IOS_RULE = [{"when": {"os": ["ios"]}, "url": "https://shop.example.com/i"}]


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def stream_clicks(app) -> list:
    await asyncio.sleep(0.05)  # the recorder's group commit has answered; nothing else to wait for
    clicks = []
    for _, fields in await app.ctx.redis.xrange(app.ctx.keys.clicks):
        clicks.extend(decode_batch(fields[b"c"]))
    return clicks


async def go(client, code: str, agent: str = DESKTOP, **headers) -> tuple[int, str]:
    response = await client.get(f"/{code}", headers={"user-agent": agent, **headers})
    return response.status_code, response.headers.get("location", "")


def without_click(location: str) -> str:
    return location.split("ct_click=")[0].rstrip("?&")


def test_rules_by_os_device_and_country_header_first_match_wins(settings) -> None:
    settings = settings.model_copy(update={"country_header": "CF-IPCountry"})
    rules = [
        {"when": {"os": ["ios"], "country": ["GB", "IE"]}, "url": "shopapp://product/42"},
        {"when": {"os": ["ios"]}, "url": "https://shop.example.com/ios"},
        {"when": {"device": ["mobile", "tablet"]}, "url": "https://shop.example.com/m"},
        {"when": {"country": ["DE"]}, "url": "https://shop.example.com/de"},
    ]

    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p", rules=rules)
            assert link["rules"][0] == {
                "when": {"os": ["ios"], "country": ["GB", "IE"]},
                "url": rules[0]["url"],
            }
            code = link["code"]
            cases = [
                (IPHONE, "GB", "shopapp://product/42"),  # an app deep link, with its click id
                (IPHONE, "gb", "shopapp://product/42"),
                (IPHONE, "FR", "https://shop.example.com/ios"),
                (ANDROID, "GB", "https://shop.example.com/m"),
                (DESKTOP, "DE", "https://shop.example.com/de"),
                (DESKTOP, "FR", "https://shop.example.com/p"),  # no match: the link's url
                # without the header, the offline lookup (the test client's documentation address: none)
                (IPHONE, "", "https://shop.example.com/ios"),
                (DESKTOP, "", "https://shop.example.com/p"),
            ]
            countries = app.ctx.redirect._router.countries
            for agent, country, expected in cases:
                status, location = await go(client, code, agent, **{"cf-ipcountry": country})
                assert countries.loaded is (not country)  # loaded only once a viewer came without one
                assert status == 302 and without_click(location) == expected, (agent, country, location)
                assert parse_qs(urlsplit(location).query)["ct_click"]
            clicks = await stream_clicks(app)
            assert len(clicks) == len(cases)
            assert {c.variant for c in clicks} == {-1}
            assert {c.dest_host for c in clicks} == {"shop.example.com"}  # a deep link is its link's host

    asyncio.run(scenario())


def test_country_from_the_offline_lookup_only_for_links_with_country_rules(settings) -> None:
    # The test client's peer is a trusted proxy, so X-Forwarded-For names the viewer.
    settings = settings.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]})

    async def scenario():
        async with running_app(settings) as (app, client):
            countries = app.ctx.redirect._router.countries
            plain = await make_link(client, "alice", "https://shop.example.com/plain", rules=IOS_RULE)
            assert (await go(client, plain["code"], **{"x-forwarded-for": "81.2.69.142"}))[0] == 302
            assert not countries.loaded  # no country rule: the database is not loaded
            rules = [{"when": {"country": ["GB"]}, "url": "https://shop.example.com/uk"}]
            link = await make_link(client, "alice", "https://shop.example.com/p", rules=rules)
            for ip, expected in [("81.2.69.142", "/uk"), ("8.8.8.8", "/p"), ("2a00:1450:4001::200e", "/p")]:
                status, location = await go(client, link["code"], **{"x-forwarded-for": ip})
                assert status == 302 and urlsplit(location).path == expected, (ip, location)
            assert countries.loaded

    asyncio.run(scenario())


def test_variants_are_sticky_weighted_and_on_the_click(settings) -> None:
    variants = [
        {"url": "https://a.example.com/", "weight": 70},
        {"url": "https://b.example.com/", "weight": 30},
    ]
    settings = settings.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]})

    async def scenario():
        async with running_app(settings) as (app, client):
            bots = [{"when": {"device": ["bot"]}, "url": "https://shop.example.com/bot"}]
            link = await make_link(
                client, "alice", "https://shop.example.com/p", variants=variants, rules=bots
            )
            assert link["variants"] == variants
            code = link["code"]
            seen = {}
            for i in range(200):
                viewer = {"x-forwarded-for": f"81.2.{i // 250}.{i % 250 + 1}"}
                hosts = {urlsplit((await go(client, code, DESKTOP, **viewer))[1]).hostname for _ in range(3)}
                assert len(hosts) == 1  # sticky: the same viewer always gets the same variant
                seen[i] = hosts.pop()
            share_a = sum(h == "a.example.com" for h in seen.values()) / len(seen)
            assert 0.55 < share_a < 0.85  # 70 % of 200 viewers, far from a coin flip either way
            # the rule is checked first: a bot gets the rule's destination, no variant
            bot = await go(client, code, "Googlebot/2.1 (+http://www.google.com/bot.html)")
            assert urlsplit(bot[1]).path == "/bot"
            clicks = await stream_clicks(app)
            by_host = {(c.dest_host, c.variant) for c in clicks}
            assert by_host == {("a.example.com", 0), ("b.example.com", 1), ("shop.example.com", -1)}

    asyncio.run(scenario())


def test_expiry_by_time_and_expired_url(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            live = await make_link(client, "alice", "https://shop.example.com/p", expires_at=iso_in(3600))
            assert (await go(client, live["code"]))[0] == 302
            gone = await make_link(client, "alice", "https://shop.example.com/p", expires_at=iso_in(-1))
            response = await client.get(f"/{gone['code']}")
            assert response.status_code == 410 and response.json()["error"]["code"] == "expired"
            assert (await client.head(f"/{gone['code']}")).status_code == 410
            moved = await make_link(client, "alice", "https://shop.example.com/p", expires_at=iso_in(-1),
                                    expired_url="https://shop.example.com/sale-over")  # fmt: skip
            status, location = await go(client, moved["code"] + "?utm_source=yt")
            assert (status, location) == (302, "https://shop.example.com/sale-over")  # no click id
            clicks = await stream_clicks(app)
            assert [c.code for c in clicks] == [live["code"]]  # expired answers are not recorded
            metrics = (await client.get("/metrics")).text
            assert 'clicktrail_redirect_fallbacks_total{reason="link_expired"} 3.0' in metrics

    asyncio.run(scenario())


def test_max_clicks_counts_gets_only_and_a_patch_can_raise_it(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p", max_clicks=3,
                                   expired_url="https://shop.example.com/over")  # fmt: skip
            code = link["code"]
            assert (await client.head(f"/{code}")).status_code == 302  # a HEAD looks, takes no click
            statuses = [await go(client, code) for _ in range(5)]
            assert [s for s, _ in statuses] == [302] * 5
            assert [loc for _, loc in statuses[3:]] == ["https://shop.example.com/over"] * 2
            assert (await client.head(f"/{code}")).headers["location"] == "https://shop.example.com/over"
            patched = await client.patch(f"/api/links/{code}", json={"max_clicks": 4}, headers=ADMIN)
            assert patched.status_code == 200 and patched.json()["max_clicks"] == 4
            await asyncio.sleep(0.3)  # the link-change stream reaches the worker's cache
            assert "ct_click=" in (await go(client, code))[1]  # exactly one more
            assert (await go(client, code))[1] == "https://shop.example.com/over"
            assert len(await stream_clicks(app)) == 1 + 4  # the HEAD and the four counted GETs

    asyncio.run(scenario())


def test_patch_changes_a_link_and_clears_fields(settings) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(
                client, "alice", "https://shop.example.com/old", max_clicks=10, rules=IOS_RULE
            )
            code = link["code"]
            body = {"url": "https://shop.example.com/new", "rules": None,
                    "variants": [{"url": "https://shop.example.com/v", "weight": 1}]}  # fmt: skip
            patched = await client.patch(f"/api/links/{code}", json=body, headers=ADMIN)
            assert patched.status_code == 200, patched.text
            shown = patched.json()
            assert shown["url"] == "https://shop.example.com/new" and "rules" not in shown
            assert shown["max_clicks"] == 10 and shown["variants"] == body["variants"]
            assert (await client.get(f"/api/links/{code}", headers=ADMIN)).json()["variants"] == body[
                "variants"
            ]
            await asyncio.sleep(0.3)
            assert urlsplit((await go(client, code, IPHONE))[1]).path == "/v"
            cleared = await client.patch(f"/api/links/{code}", json={"variants": None, "max_clicks": None},
                                         headers=ADMIN)  # fmt: skip
            assert cleared.status_code == 200 and (await app.ctx.links.get(code)).smart is None

    asyncio.run(scenario())


BAD_FIELDS = [
    ({"rules": [{"when": {"os": ["ios"]}, "url": "javascript:alert(1)"}]}, "invalid_url.scheme"),
    ({"rules": [{"when": {"os": ["ios"]}, "url": "JavaScript://%0Aalert(1)"}]}, "invalid_url.scheme"),
    ({"rules": [{"when": {"os": ["ios"]}, "url": "shopapp:nohost"}]}, "invalid_url.not_absolute"),
    ({"rules": [{"when": {"os": ["symbian"]}, "url": "https://shop.example.com/"}]}, "invalid_field"),
    ({"rules": [{"when": {"country": ["gb"]}, "url": "https://shop.example.com/"}]}, "invalid_field"),
    ({"rules": [{"when": {"browser": ["x"]}, "url": "https://shop.example.com/"}]}, "invalid_field"),
    ({"rules": [{"when": {}}]}, "invalid_field"),
    ({"rules": "x"}, "invalid_field"),
    ({"rules": [{"url": "https://shop.example.com/"}] * 21}, "too_many"),
    ({"variants": [{"url": "https://shop.example.com/", "weight": 0}]}, "invalid_field"),
    ({"variants": [{"url": "https://shop.example.com/", "weight": 1.5}]}, "invalid_field"),
    ({"variants": [{"url": "https://shop.example.com/", "weight": True}]}, "invalid_field"),
    ({"variants": [{"url": "shopapp://p/1", "weight": 1}]}, "invalid_url.scheme"),  # rules only
    ({"variants": [{"url": "https://shop.example.com/", "weight": 1}] * 11}, "too_many"),
    ({"expires_at": "tomorrow"}, "invalid_field"),
    ({"expires_at": "2026-12-31T00:00:00"}, "invalid_field"),  # no time zone
    ({"expires_at": 1767139200}, "invalid_field"),
    # Out of range once the offset applies (converted with astimezone(), these answered 500).
    ({"expires_at": "0001-01-01T00:00:00+01:00"}, "invalid_field"),
    ({"expires_at": "9999-12-31T23:59:59-01:00"}, "invalid_field"),
    ({"expires_at": "1970-01-01T00:00:00+14:00"}, "invalid_field"),
    ({"max_clicks": 0}, "invalid_field"),
    ({"max_clicks": "5"}, "invalid_field"),
    ({"expired_url": "data:text/html,hi"}, "invalid_url.scheme"),
    ({"expired_url": "http://127.0.0.1/"}, "invalid_url.non_public_host"),
    ({"url": "shopapp://p/1"}, "invalid_url.scheme"),  # the link's own url stays http(s)
]


@pytest.mark.parametrize(("fields", "code"), BAD_FIELDS)
def test_bad_fields_are_refused_by_post_and_patch_and_nothing_is_written(settings, fields, code) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p")
            before = await app.ctx.redis.xlen(app.ctx.keys.link_events)
            post = await client.post("/api/links", json={"url": "https://shop.example.com/p",
                                     "creator_id": "alice", **fields}, headers=ADMIN)  # fmt: skip
            patch = await client.patch(f"/api/links/{link['code']}", json=fields, headers=ADMIN)
            for response in (post, patch):
                assert response.status_code == 422, response.text
                assert response.json()["error"]["code"] == code
            assert await app.ctx.redis.xlen(app.ctx.keys.link_events) == before
            assert (await app.ctx.links.get(link["code"])).smart is None

    asyncio.run(scenario())


def test_patch_refusals(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            code = (await make_link(client, "alice", "https://shop.example.com/p"))["code"]
            for body, status, error in [
                ({"creator_id": "bob"}, 422, "unknown_field"),
                ({}, 422, "empty_patch"),
                ({"url": None}, 422, "invalid_url.not_a_string"),
                ([1], 400, "malformed_body"),
            ]:
                response = await client.patch(f"/api/links/{code}", json=body, headers=ADMIN)
                assert (response.status_code, response.json()["error"]["code"]) == (status, error), body
            assert (
                await client.patch("/api/links/nosuchcode", json={"max_clicks": 1}, headers=ADMIN)
            ).status_code == 404
            key = (await client.post("/api/keys", json={"creator_id": "bob"}, headers=ADMIN)).json()["key"]
            other = await client.patch(f"/api/links/{code}", json={"max_clicks": 1},
                                       headers={"authorization": f"Bearer {key}"})  # fmt: skip
            assert other.status_code == 403

    asyncio.run(scenario())


# A trusted proxy's country header as bytes: Latin-1 past ASCII (how the server reads a header), among
# them "ß", whose Unicode upper case "SS" is a country (South Sudan), and "ÿ", "µ" whose upper case is not
# Latin-1 at all; each counts as no header, so the offline lookup decides (the test client's address: none).
NOT_COUNTRIES = [b"\xdf", b"\xdfa", b"a\xdf", b"\xff\xff", b"\xb5s", b"D1", b"1D", b"-", b" D", b"\xc4\xb1"]


def test_a_country_header_that_is_not_two_ascii_letters_counts_as_none(settings) -> None:
    settings = settings.model_copy(update={"country_header": "CF-IPCountry"})
    rules = [
        {"when": {"country": ["SS"]}, "url": "https://shop.example.com/ss"},
        {"when": {"country": ["DE"]}, "url": "https://shop.example.com/de"},
    ]

    async def scenario():
        async with running_app(settings) as (app, client):
            code = (await make_link(client, "alice", "https://shop.example.com/p", rules=rules))["code"]
            for header in NOT_COUNTRIES:
                status, location = await go(client, code, **{"cf-ipcountry": header})
                assert status == 302 and urlsplit(location).path == "/p", (header, location)
            assert app.ctx.redirect._router.countries.loaded  # asked, as for a viewer without the header
            for header, path in [(b"de", "/de"), (b"Ss", "/ss"), (b"DEU", "/de")]:  # the first two letters
                status, location = await go(client, code, **{"cf-ipcountry": header})
                assert status == 302 and urlsplit(location).path == path, (header, location)
            clicks = await stream_clicks(app)
            assert [c.country for c in clicks] == [""] * len(NOT_COUNTRIES) + ["DE", "SS", "DE"]

    asyncio.run(scenario())
