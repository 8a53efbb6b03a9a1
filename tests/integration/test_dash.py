"""The dashboard (/dash) through HTTP against the real Redis and ClickHouse 18.16: sign-in (good, bad and
forged), cookie flags, sign-out, scoping (a creator never sees another's data, a merchant never the admin's
pages), CSRF refusals that write nothing, every creator and admin page and form, bad form input answered
with a page naming the problem (never a 5xx), and the figures equal to what ClickHouse holds."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import markupsafe
import pytest
from starlette.routing import Route

from attribution import audience, report
from core.keys import Keys
from core.links import Link
from core.migrate import migrate
from redirector.auth import key_digest
from redirector.dash import routes as dash_routes
from tests.conftest import free_port
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.attributionhelp import add_merchant
from tests.integration.dashhelp import ADMIN_TOKEN, csrf_token, issue_key, post_form, sign_in
from tests.integration.dochelp import assert_documented

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

SHOP = "https://shop.example.com/p/1"


@pytest.fixture(autouse=True)
def migrated(clickhouse) -> None:
    """Every page may read ClickHouse: each test has its own migrated database."""
    migrate(clickhouse, log=lambda _line: None)


def run(coro) -> None:
    asyncio.run(coro)


def session_keys(redis_client, settings) -> list[bytes]:
    return list(redis_client.scan_iter(match=settings.redis_prefix + "dash:session:*"))


# --- sign-in, cookies, sign-out ---------------------------------------------------------------------------
def test_sign_in_with_a_key_sets_a_strict_http_only_session_cookie(
    settings, redis_client, clickhouse
) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            key = await issue_key(client, creator_id="alice")
            signed = await sign_in(client, key)
            assert signed.status_code == 303
            assert signed.headers["location"] == "/dash/creators/alice"
            cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("ct_dash="))
            flags = {part.strip().lower() for part in cookie.split(";")[1:]}
            assert {"httponly", "samesite=strict", "path=/dash"} <= flags
            assert "secure" not in flags  # plain http here: a Secure cookie would never come back
            assert len(session_keys(redis_client, settings)) == 1
            ttl = redis_client.ttl(session_keys(redis_client, settings)[0])
            assert 0 < ttl <= settings.dash_session_ttl_s
            assert key.encode() not in b"".join(redis_client.hvals(session_keys(redis_client, settings)[0]))
            page = await client.get("/dash/creators/alice")
            assert page.status_code == 200 and "Overview of alice" in page.text
            # a second sign-in form sent from the same browser (another tab) replaces the session
            first = client.cookies.get("ct_dash")
            client.cookies.clear()
            form = await client.get("/dash/login")
            login = client.cookies.get("ct_dash_login")
            client.cookies.clear()
            again = await client.post(
                "/dash/login",
                data={"csrf_token": csrf_token(form.text), "key": ADMIN_TOKEN},
                headers={"cookie": f"ct_dash={first}; ct_dash_login={login}"},
            )
            assert again.headers["location"] == "/dash/admin"
            assert len(session_keys(redis_client, settings)) == 1
            assert f"ct_dash={first}" not in again.headers["set-cookie"]

    run(scenario())


def test_the_cookie_is_secure_behind_an_https_public_url(settings, redis_client, clickhouse) -> None:
    secure = settings.model_copy(update={"public_url": "https://go.example.com"})

    async def scenario():
        async with running_app(secure) as (_, client):
            form = await client.get("/dash/login")
            assert "secure" in form.headers["set-cookie"].lower()
            # the test client speaks http, so it would not send a Secure cookie back: send it by hand
            login_cookie = form.headers["set-cookie"].split(";", 1)[0]
            signed = await client.post(
                "/dash/login",
                data={"csrf_token": csrf_token(form.text), "key": ADMIN_TOKEN},
                headers={"cookie": login_cookie},
            )
            assert signed.status_code == 303
            cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("ct_dash="))
            assert "secure" in cookie.lower()

    run(scenario())


BAD_KEYS = [
    "ctk_" + "A" * 43,
    "ctk_",
    "not-a-key",
    "admin-test-token-",
    "ADMIN-TEST-TOKEN",
    "x" * 600,
    "ctk_\u00e9\u2603",
    "   ",
]


def test_a_bad_key_is_refused_on_the_page_and_opens_no_session(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            for key in BAD_KEYS:
                refused = await sign_in(client, key)
                assert refused.status_code in (401, 422), (key, refused.status_code)
                assert refused.headers["content-type"].startswith("text/html")
                assert "not valid" in refused.text or "Enter your API key" in refused.text
                assert "ct_dash=" not in refused.headers.get("set-cookie", "")
            assert session_keys(redis_client, settings) == []
            assert (await client.get("/dash/admin")).status_code == 303  # still signed out

    run(scenario())


def test_sign_in_without_the_forms_token_is_refused(settings, redis_client, clickhouse) -> None:
    """Login CSRF: a form posted from elsewhere has no token matching our cookie."""

    async def scenario():
        async with running_app(settings) as (_, client):
            missing = await client.post("/dash/login", data={"key": ADMIN_TOKEN})
            assert missing.status_code == 403
            await client.get("/dash/login")  # the cookie is set, the form field is forged
            forged = await client.post("/dash/login", data={"key": ADMIN_TOKEN, "csrf_token": "guess"})
            assert forged.status_code == 403
            assert session_keys(redis_client, settings) == []

    run(scenario())


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await sign_in(client, ADMIN_TOKEN)
            cookie = client.cookies.get("ct_dash")
            # sign-out is a form too: without its token it does nothing
            assert (await client.post("/dash/logout", data={})).status_code == 403
            assert (await client.get("/dash/admin")).status_code == 200
            out = await post_form(client, "/dash/admin", "/dash/logout", {})
            assert out.status_code == 303 and out.headers["location"] == "/dash/login"
            assert session_keys(redis_client, settings) == []
            client.cookies.set("ct_dash", cookie, path="/dash")  # a copy kept by someone
            again = await client.get("/dash/admin")
            assert again.status_code == 303 and again.headers["location"].startswith("/dash/login")

    run(scenario())


def test_a_session_ends_when_its_key_is_deleted(settings, redis_client, clickhouse) -> None:
    """Deleting a key's record (revoking it) ends the sessions it opened at their next request."""

    async def scenario():
        async with running_app(settings) as (_, client):
            alice = await issue_key(client, creator_id="alice")
            bob = await issue_key(client, creator_id="bob")
            await sign_in(client, alice)
            assert (await client.get("/dash/creators/alice")).status_code == 200
            redis_client.delete(Keys.of(settings).api_key(key_digest(alice)))
            assert len(list(redis_client.scan_iter(match=settings.redis_prefix + "apikey:*"))) == 1
            for path in ("/dash/creators/alice", "/dash/creators/alice/links", "/dash"):
                gone = await client.get(path)
                assert gone.status_code == 303 and gone.headers["location"].startswith("/dash/login")
            # bob's key still exists: his session lives on
            await sign_in(client, bob)
            assert (await client.get("/dash/creators/bob")).status_code == 200

    run(scenario())


@pytest.mark.parametrize(
    "edit",
    [{"subject_id": "mallory"}, {"scope": "merchant"}, {"scope": "root"}, {"subject_id": "a b"}],
    ids=["other-subject", "other-scope", "no-scope", "bad-subject"],
)
def test_a_session_ends_when_its_key_record_is_edited_by_hand(
    settings, redis_client, clickhouse, edit
) -> None:
    """The session checks the key as the API does (`auth.live_key`): a record edited into an unusable
    one, or into another subject's, ends the sessions it opened."""

    async def scenario():
        async with running_app(settings) as (_, client):
            alice = await issue_key(client, creator_id="alice")
            await sign_in(client, alice)
            assert (await client.get("/dash/creators/alice")).status_code == 200
            redis_client.hset(Keys.of(settings).api_key(key_digest(alice)), mapping=edit)
            gone = await client.get("/dash/creators/alice")
            assert gone.status_code == 303 and gone.headers["location"].startswith("/dash/login")

    run(scenario())


def test_a_session_ends_when_the_admin_token_is_rotated(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await sign_in(client, ADMIN_TOKEN)
            cookie = client.cookies.get("ct_dash")
            assert (await client.get("/dash/admin")).status_code == 200
        async with running_app(settings) as (_, client):  # a restart with the same token: still signed in
            client.cookies.set("ct_dash", cookie, path="/dash")
            assert (await client.get("/dash/admin")).status_code == 200
        for token in ("another-admin-token-of-enough-length", None):
            async with running_app(settings.model_copy(update={"admin_token": token})) as (_, client):
                client.cookies.set("ct_dash", cookie, path="/dash")
                gone = await client.get("/dash/admin")
                assert gone.status_code == 303 and gone.headers["location"].startswith("/dash/login")

    run(scenario())


def test_signed_out_pages_lead_to_sign_in_and_back_but_never_off_site(
    settings, redis_client, clickhouse
) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            page = await client.get("/dash/admin/keys")
            assert page.status_code == 303
            assert page.headers["location"] == "/dash/login?next=%2Fdash%2Fadmin%2Fkeys"
            form = await client.get(page.headers["location"])
            signed = await client.post(
                "/dash/login",
                data={"csrf_token": csrf_token(form.text), "key": ADMIN_TOKEN, "next": "/dash/admin/keys"},
            )
            assert signed.headers["location"] == "/dash/admin/keys"
            await post_form(client, "/dash/admin", "/dash/logout", {})
            for target in ("//evil.example/x", "https://evil.example/dash", "/dash\\@evil", "/api/keys"):
                form = await client.get("/dash/login")
                signed = await client.post(
                    "/dash/login",
                    data={"csrf_token": csrf_token(form.text), "key": ADMIN_TOKEN, "next": target},
                )
                assert signed.headers["location"] == "/dash/admin", target
                await post_form(client, "/dash/admin", "/dash/logout", {})

    run(scenario())


# --- scoping ----------------------------------------------------------------------------------------------
def test_a_creator_sees_only_their_own_pages_and_links(settings, redis_client, clickhouse) -> None:

    async def scenario():
        async with running_app(settings) as (app, client):
            bobs = await make_link(client, "bob", SHOP)
            await sign_in(client, await issue_key(client, creator_id="alice"))
            for path in ("/dash/creators/bob", "/dash/creators/bob/links", "/dash/creators/bob/earnings"):
                page = await client.get(path)
                assert page.status_code == 403, path
                assert bobs["code"] not in page.text
            for path in ("/dash/admin", "/dash/admin/keys", "/dash/admin/merchants", "/dash/merchants/m1"):
                assert (await client.get(path)).status_code in (403, 404), path
            # Bob's link through Alice's own pages: not found, not disabled, no QR
            code = bobs["code"]
            qr = await client.get(f"/dash/creators/alice/links/{code}/qr.svg")
            assert qr.status_code == 404
            token = csrf_token((await client.get("/dash/creators/alice/links")).text)
            for action in (
                f"/dash/creators/alice/links/{code}/disable",
                f"/dash/creators/bob/links/{code}/disable",
            ):
                refused = await client.post(action, data={"csrf_token": token})
                assert refused.status_code in (403, 404), action
            assert not (await app.ctx.links.get(code)).disabled
            # nor can she create a link in Bob's name
            refused = await client.post("/dash/creators/bob/links", data={"csrf_token": token, "url": SHOP})
            assert refused.status_code == 403
            assert len(await app.ctx.links.by_creator("bob")) == 1

    run(scenario())


def test_a_merchant_key_cannot_open_admin_or_creator_pages(settings, redis_client, clickhouse) -> None:

    async def scenario():
        async with running_app(settings) as (app, client):
            await add_merchant(app.ctx.redis, app.ctx.keys, "m1", ["shop.example.com"], 1)
            await sign_in(client, await issue_key(client, merchant_id="m1"))
            for path in ("/dash/admin", "/dash/admin/keys", "/dash/admin/merchants", "/dash/creators/alice"):
                assert (await client.get(path)).status_code == 403, path
            before = len(list(redis_client.scan_iter(match=settings.redis_prefix + "apikey:*")))
            token = csrf_token((await client.get("/dash/admin")).text)  # the 403 page has the sign-out form
            refused = await client.post(
                "/dash/admin/keys", data={"csrf_token": token, "scope": "creator", "subject_id": "eve"}
            )
            assert refused.status_code == 403
            assert len(list(redis_client.scan_iter(match=settings.redis_prefix + "apikey:*"))) == before

    run(scenario())


# --- CSRF -------------------------------------------------------------------------------------------------
def test_forms_without_the_sessions_token_write_nothing(settings, redis_client, clickhouse) -> None:

    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "alice", SHOP)
            await sign_in(client, await issue_key(client, creator_id="alice"))
            other = await client.get("/dash/login")  # a token, but not this session's
            stale = csrf_token(other.text) if other.status_code == 200 else "stale"
            for data in ({}, {"csrf_token": ""}, {"csrf_token": "x"}, {"csrf_token": stale}):
                create = await client.post("/dash/creators/alice/links", data={"url": SHOP, **data})
                assert create.status_code == 403, data
                disable = await client.post(f"/dash/creators/alice/links/{link['code']}/disable", data=data)
                assert disable.status_code == 403, data
            assert [x.code for x in await app.ctx.links.by_creator("alice")] == [link["code"]]
            assert not (await app.ctx.links.get(link["code"])).disabled

    run(scenario())


def _post_routes() -> list[str]:
    """The path of every POST route of the dashboard, read from dash_routes.routes() (a new form is walked
    without being listed here), except the catch-all 404."""
    found = []
    for route in [*dash_routes.routes(), *dash_routes.merchant_routes()]:
        if isinstance(route, Route) and "POST" in (route.methods or ()) and "{rest" not in route.path:
            found.append(route.path)
    return sorted(set(found))


def _redis_state(redis_client, settings) -> dict[bytes, bytes]:
    return {key: redis_client.dump(key) for key in redis_client.scan_iter(match=settings.redis_prefix + "*")}


def test_every_post_route_refuses_a_form_without_its_token(settings, redis_client, clickhouse) -> None:
    """Walks every POST route with the admin's session (allowed everywhere, so only CSRF can refuse): no
    token, an empty one, a wrong one -> 403 naming the token, and Redis byte for byte unchanged."""
    paths = _post_routes()
    assert len(paths) >= 9 and "/dash/login" in paths and "/dash/logout" in paths

    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "alice", SHOP)
            await add_merchant(
                app.ctx.redis, app.ctx.keys, "m1", ["shop.example.com"], int(time.time() * 1000)
            )
            await sign_in(client, ADMIN_TOKEN)
            fields = {"creator_id": "alice", "merchant_id": "m1", "code": link["code"], "order_id": "o-1"}
            body = {"url": SHOP, "code": "WALK1", "scope": "creator", "subject_id": "eve", "sku": "S-1",
                    "title": "T", "price_minor": "1", "currency": "EUR", "default_rate_bps": "1"}  # fmt: skip
            before = _redis_state(redis_client, settings)
            for template in paths:
                path = template.format(**fields)
                for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}):
                    refused = await client.post(path, data={**body, **data})
                    assert refused.status_code == 403, (path, data, refused.status_code)
                    assert "security token" in refused.text, path
                    assert _redis_state(redis_client, settings) == before, path
            assert (await client.get("/dash/admin")).status_code == 200  # still signed in

    run(scenario())


def test_admin_forms_without_the_token_write_nothing(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await sign_in(client, ADMIN_TOKEN)
            before = len(list(redis_client.scan_iter(match=settings.redis_prefix + "apikey:*")))
            for data in ({}, {"csrf_token": "nope"}):
                refused = await client.post(
                    "/dash/admin/keys", data={"scope": "creator", "subject_id": "x", **data}
                )
                assert refused.status_code == 403
                assert "ctk_" not in refused.text
            assert len(list(redis_client.scan_iter(match=settings.redis_prefix + "apikey:*"))) == before

    run(scenario())


# --- bad input: a page naming the problem, never a 5xx ------------------------------------------------------
BAD_LINKS = [
    ({"url": "not a url"}, "url"),
    ({"url": ""}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "http://127.0.0.1/admin"}, "url"),
    ({"url": "https://" + "a" * 5000 + ".example/"}, "url"),
    ({"url": SHOP, "code": "ab"}, "code"),
    ({"url": SHOP, "code": "has space"}, "code"),
    ({"url": SHOP, "code": "dash"}, "reserved"),
    ({"url": SHOP, "code": "API"}, "reserved"),
]


def test_bad_link_forms_show_the_reason_and_create_nothing(settings, redis_client, clickhouse) -> None:

    async def scenario():
        async with running_app(settings) as (app, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            for data, word in BAD_LINKS:
                page = await post_form(
                    client, "/dash/creators/alice/links", "/dash/creators/alice/links", data
                )
                assert page.status_code == 422, (data, page.status_code)
                error = re.search(r'<p class="error" role="alert" id="form-error">([^<]+)</p>', page.text)
                assert error and word in error.group(1).lower(), (data, page.text[-600:])
            assert await app.ctx.links.by_creator("alice") == []
            # a code already taken is told too
            await make_link(client, "bob", SHOP, code="taken1")
            page = await post_form(
                client,
                "/dash/creators/alice/links",
                "/dash/creators/alice/links",
                {"url": SHOP, "code": "taken1"},
            )
            assert page.status_code == 422 and "already taken" in page.text

    run(scenario())


def test_malformed_form_bodies_are_4xx_pages(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await sign_in(client, ADMIN_TOKEN)
            token = csrf_token((await client.get("/dash/admin/keys")).text)
            cases = [
                ({"content-type": "application/json"}, b'{"csrf_token": "%s"}' % token.encode(), 415),
                (
                    {"content-type": "application/x-www-form-urlencoded"},
                    b"csrf_token=" + token.encode() + b"&subject_id=%ff",
                    400,
                ),
                ({"content-type": "application/x-www-form-urlencoded"}, b"a=" + b"x" * 70_000, 413),
                ({"content-type": "application/x-www-form-urlencoded"}, b"&".join([b"f=1"] * 200), 400),
            ]
            for headers, body, status in cases:
                answer = await client.post("/dash/admin/keys", content=body, headers=headers)
                assert answer.status_code == status, (headers, body[:40], answer.status_code)
                assert answer.headers["content-type"].startswith("text/html")
            many = await client.post("/dash/admin/keys", content=cases[-1][1], headers=cases[-1][0])
            assert "more than 100 fields" in many.text  # not "not valid url-encoded UTF-8"
            assert (await client.get("/dash/no/such/page")).status_code == 404
            for path in ("/dash/creators/" + "x" * 65, "/dash/creators/a%20b", "/dash/creators/alice?days=8"):
                answer = await client.get(path)
                assert answer.status_code in (400, 404), path
                assert answer.headers["content-type"].startswith("text/html")

    run(scenario())


# --- creator pages ----------------------------------------------------------------------------------------
def test_links_page_creates_copies_shows_qr_and_disables(settings, redis_client, clickhouse) -> None:

    async def scenario():
        async with running_app(settings) as (app, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            created = await post_form(
                client,
                "/dash/creators/alice/links",
                "/dash/creators/alice/links",
                {"url": SHOP, "code": "spring1"},
            )
            assert created.status_code == 303
            page = await client.get(created.headers["location"])
            assert "Link spring1 created." in page.text
            short_url = f"{settings.public_url}/spring1"
            assert f'data-copy="{short_url}"' in page.text
            qr = await client.get("/dash/creators/alice/links/spring1/qr.svg")
            assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
            assert qr.content.lstrip().startswith(b"<svg")
            stored = await app.ctx.links.get("spring1")
            assert stored.creator_id == "alice" and stored.url == SHOP
            # the API sees the same link
            listed = await client.get("/api/links?creator_id=alice", headers=ADMIN)
            assert [x["code"] for x in listed.json()["links"]] == ["spring1"]
            disabled = await post_form(
                client, "/dash/creators/alice/links", "/dash/creators/alice/links/spring1/disable", {}
            )
            assert disabled.status_code == 303
            assert (await app.ctx.links.get("spring1")).disabled
            assert "(disabled)" in (await client.get("/dash/creators/alice/links")).text

    run(scenario())


def _clicks(clickhouse, rows: list[tuple[str, int, int, str, str]]) -> None:
    """(code, day offset from today, is_bot, country, device) per click, straight into `clicks` (its
    rollups fill from it); codes starting with z are Bob's, the others Alice's."""
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    data = []
    for n, (code, offset, is_bot, country, device) in enumerate(rows):
        ts = today - timedelta(days=offset)
        ts_s = int(ts.timestamp())
        creator = "bob" if code.startswith("z") else "alice"
        data.append(
            (f"c{n}", ts_s, ts_s * 1000, code, creator, "m1", "shop.example.com", 0, is_bot, country, device)
        )
    columns = (
        "click_id",
        "ts",
        "ts_ms",
        "code",
        "creator_id",
        "merchant_id",
        "dest_host",
        "is_head",
        "is_bot",
        "country",
        "device",
    )
    clickhouse.insert("clicks", columns, [list(col) for col in zip(*data, strict=True)])


def _table(html: str, section: str) -> list[list[str]]:
    """The rows (cells as text) of the first table inside the element with this id."""
    start = html.index(f'id="{section}"')
    body = html[start:].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
        for r in rows
    ]


def test_countries_and_devices_count_the_newest_links_up_to_the_cap(
    settings, redis_client, clickhouse, monkeypatch
) -> None:
    """audience.MAX_BREAKDOWN_LINKS bounds the codes a breakdown reads (page and API alike); the daily
    series still counts every link. Here the cap is 1: only the newest link's country is shown."""
    monkeypatch.setattr(audience, "MAX_BREAKDOWN_LINKS", 1)
    _clicks(clickhouse, [("old1", 0, 0, "FR", "mobile"), ("new1", 0, 0, "DE", "desktop")])

    async def scenario():
        async with running_app(settings) as (_, client):
            await make_link(client, "alice", SHOP, code="old1")
            await asyncio.sleep(0.01)  # the newer link: a later time in the creator's sorted set
            await make_link(client, "alice", SHOP, code="new1")
            answer = (await client.get("/api/creators/alice/clicks", headers=ADMIN)).json()
            assert [c["name"] for c in answer["countries"]] == ["DE"], answer["countries"]
            assert answer["human"] == 2  # the series: both links
            await sign_in(client, await issue_key(client, creator_id="alice"))
            page = await client.get("/dash/creators/alice?days=7")
            assert page.status_code == 200 and "DE" in page.text and ">FR<" not in page.text

    run(scenario())


def test_overview_figures_equal_the_rollups(settings, redis_client, clickhouse) -> None:
    hostile = '<script>alert("x")</script>'
    _clicks(
        clickhouse,
        [("aaa1", 0, 0, "FR", "mobile")] * 3
        + [("aaa1", 0, 1, "US", "desktop")] * 2
        + [("bbb2", 1, 0, "DE", "desktop"), ("bbb2", 1, 0, hostile, "tablet")]
        + [("zzz9", 1, 0, "IT", "mobile")] * 4,  # another creator's code: never counted for alice
    )

    async def scenario():
        async with running_app(settings) as (_, client):
            for code in ("aaa1", "bbb2"):
                await make_link(client, "alice", SHOP, code=code)
            await sign_in(client, await issue_key(client, creator_id="alice"))
            page = await client.get("/dash/creators/alice?days=7")
            assert page.status_code == 200, page.text
            assert hostile not in page.text and "&lt;script&gt;" in page.text
            first = datetime.now(UTC).date() - timedelta(days=6)
            expected = report.day_range(str(first), None, datetime.now(UTC).date())
            held = {
                day: (human, bots)
                for day, human, bots in clickhouse.execute(
                    "SELECT toString(day), sum(clicks) - sum(bot_clicks), sum(bot_clicks) "
                    f"FROM {clickhouse.database}.creator_clicks_daily WHERE creator_id = 'alice' GROUP BY day"
                )
            }
            shown = {row[0]: (int(row[1]), int(row[2])) for row in _table(page.text, "daily")}
            assert len(shown) == 7 and str(expected[1]) in shown
            assert {d: v for d, v in shown.items() if v != (0, 0)} == held
            assert sum(h for h, _ in held.values()) == 5 and sum(b for _, b in held.values()) == 2
            countries = dict(_table(page.text, "countries"))
            assert countries == {"FR": "3", "DE": "1", str(markupsafe.escape(hostile)): "1"}
            devices = dict(_table(page.text, "devices"))
            assert devices == {"mobile": "3", "desktop": "1", "tablet": "1"}  # bots' devices not counted
            # the JSON API answers the same figures from the same function
            api = await client.get(f"/api/creators/alice/clicks?from={first}", headers=ADMIN)
            assert api.status_code == 200, api.text
            assert_documented(api, "GET", "/api/creators/{creator_id}/clicks")
            body = api.json()
            assert (body["human"], body["bots"]) == (5, 2)
            assert {c["name"]: c["human"] for c in body["countries"]} == {"FR": 3, "DE": 1, hostile: 1}
            assert [(d["day"], d["human"], d["bots"]) for d in body["days"]] == sorted(
                (day, h, b) for day, (h, b) in shown.items()
            )

    run(scenario())


LEDGER = (
    "merchant_id", "order_id", "entry_id", "kind", "status", "amount_minor", "orders", "currency",
    "creator_id", "sku", "quantity", "basis_minor", "rate_bps", "rate_rule", "rate_version", "reason",
    "effective_at", "effective_ms", "booked_ms",
)  # fmt: skip


def test_earnings_page_shows_statuses_orders_with_their_explanation(
    settings, redis_client, clickhouse
) -> None:
    migrate(clickhouse, log=lambda _line: None)
    now_s = int(time.time())
    rows = [
        (
            "m1",
            "O-1",
            "acc:0",
            "accrual",
            "pending",
            800,
            1,
            "EUR",
            "alice",
            "SKU<1>",
            2,
            10_000,
            800,
            "default",
            1,
            "",
        ),
        ("m1", "O-2", "none:expired", "none", "pending", 0, 0, "EUR", "alice", "", 0, 0, 0, "", 0, "expired"),
        (
            "m1",
            "O-3",
            "acc:0",
            "accrual",
            "approved",
            150,
            1,
            "JPY",
            "alice",
            "K",
            1,
            1_500,
            1000,
            "sku",
            2,
            "",
        ),
        (
            "m1",
            "O-9",
            "acc:0",
            "accrual",
            "pending",
            999,
            1,
            "EUR",
            "bob",
            "S",
            1,
            9_990,
            1000,
            "default",
            1,
            "",
        ),
    ]
    data = [(*r, now_s, now_s * 1000, now_s * 1000) for r in rows]
    clickhouse.insert("commissions", LEDGER, [list(c) for c in zip(*data, strict=True)])

    async def scenario():
        async with running_app(settings) as (_, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            page = await client.get("/dash/creators/alice/earnings")
            assert page.status_code == 200, page.text
            by_currency = {row[0]: row for row in _table(page.text, "earnings")}
            assert set(by_currency) == {"EUR", "JPY"}
            assert by_currency["EUR"][3] == "8.00 EUR" and by_currency["JPY"][4] == "150 JPY"
            assert "O-9" not in page.text  # Bob's order
            assert "Order O-1" in page.text and "Order O-2" in page.text
            assert (
                "Commission for 2 × SKU&lt;1&gt; at 8 % of 100.00 EUR (default rate, version 1)." in page.text
            )
            assert "No commission: the order came after the attribution window closed." in page.text
            assert "No payouts yet." in page.text
            # the JSON API lists the same orders with the same sentences, to the creator only
            api = await client.get("/api/creators/alice/orders", headers=ADMIN)
            assert api.status_code == 200, api.text
            assert_documented(api, "GET", "/api/creators/{creator_id}/orders")
            orders = {o["order_id"]: o["rows"] for o in api.json()["orders"]}
            assert set(orders) == {"O-1", "O-2", "O-3"}
            shown = page.text.replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">")
            for rows in orders.values():  # one grouping (api.order_rows): every row's sentence is shown
                assert all(row["explanation"] in shown for row in rows), rows
            bobs = {"authorization": "Bearer " + await issue_key(client, creator_id="bob")}
            for route, query, who, status in (
                ("orders", "", bobs, 403),
                ("orders", "?from=2026-13-01", ADMIN, 400),
                ("clicks", "", bobs, 403),
                ("clicks", "?from=2020-01-01", ADMIN, 400),  # more than 366 days
                ("clicks", "?to=1969-12-31", ADMIN, 400),
            ):
                refused = await client.get(f"/api/creators/alice/{route}{query}", headers=who)
                assert refused.status_code == status, (route, query, refused.text)
                assert_documented(refused, "GET", "/api/creators/{creator_id}/" + route)

    run(scenario())


# --- admin pages ------------------------------------------------------------------------------------------
def test_admin_pages_health_merchants_and_keys(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            await add_merchant(app.ctx.redis, app.ctx.keys, "m1", ["shop.example.com"], 1)
            keys = Keys.of(settings)
            redis_client.xadd(keys.clicks_dead, {"reason": "test"})
            made = []
            for n in range(3):
                body = {
                    "url": f"https://hooks{n}.example.com/in",
                    "events": ["link.created"],
                    "merchant_id": "m1",
                }
                response = await client.post("/api/endpoints", json=body, headers=ADMIN)
                assert response.status_code == 201, response.text
                made.append(response.json()["id"])
            for n, endpoint_id in enumerate(made):  # endpoint n: n queued, 2n dead-lettered
                for _ in range(n):
                    redis_client.xadd(keys.endpoint_queue(endpoint_id), {"e": "x"})
                for _ in range(2 * n):
                    redis_client.xadd(keys.endpoint_dead(endpoint_id), {"e": "x"})
            await sign_in(client, ADMIN_TOKEN)
            health = await client.get("/dash/admin")
            assert health.status_code == 200
            assert dict(_table(health.text, "ingest-dead"))["clicks"] == "1"
            counts = {row[0]: (row[2], row[3]) for row in _table(health.text, "endpoints")}
            assert counts == {e: (str(n), str(2 * n)) for n, e in enumerate(made)}, counts
            assert {row[0] for row in _table(health.text, "lag")} == {"clicks", "orders"}
            merchants = await client.get("/dash/admin/merchants")
            assert merchants.status_code == 200 and _table(merchants.text, "merchants")[0][0] == "m1"
            assert (await client.get("/dash/admin/creator")).status_code == 200
            opened = await client.get("/dash/admin/creator?creator_id=alice")
            assert opened.headers["location"] == "/dash/creators/alice"
            refused = await client.get("/dash/admin/creator?creator_id=a%20b")
            assert refused.status_code == 400 and "creator_id must be" in refused.text
            # a key issued by the form works once shown, and only for its subject
            issued = await post_form(
                client, "/dash/admin/keys", "/dash/admin/keys", {"scope": "creator", "subject_id": "carol"}
            )
            assert issued.status_code == 201
            key = re.search(r'<code id="new-key">([^<]+)</code>', issued.text).group(1)
            assert (await client.get("/dash/admin/keys")).text.count(key) == 0  # shown once
            for data, word in (
                ({"scope": "merchant", "subject_id": "nobody"}, "no merchant"),
                ({"scope": "creator", "subject_id": "bad id!"}, "creator_id"),
                ({"scope": "root", "subject_id": "x"}, "creator or a merchant"),
            ):
                refused = await post_form(client, "/dash/admin/keys", "/dash/admin/keys", data)
                assert refused.status_code == 422 and word in refused.text, data
            await post_form(client, "/dash/admin", "/dash/logout", {})
            assert (await sign_in(client, key)).headers["location"] == "/dash/creators/carol"

    run(scenario())


def test_the_admin_merchant_list_is_paged(settings, redis_client, clickhouse, monkeypatch) -> None:
    """MERCHANTS_SHOWN at a time by id, with the count and a link to the next page; any `after` is only
    a place in that order: past the last id it shows none, before the first the first page."""
    from redirector.dash import views_admin

    monkeypatch.setattr(views_admin, "MERCHANTS_SHOWN", 4)

    async def scenario():
        async with running_app(settings) as (app, client):
            ids = [f"m{n:02d}" for n in range(10)]
            for merchant_id in reversed(ids):
                await add_merchant(app.ctx.redis, app.ctx.keys, merchant_id, [f"{merchant_id}.example"], 1)
            await sign_in(client, ADMIN_TOKEN)
            seen, path = [], "/dash/admin/merchants"
            for _ in range(3):
                shown = await client.get(path)
                assert shown.status_code == 200 and "10 merchants in all." in shown.text
                seen.append([row[0] for row in _table(shown.text, "merchants")])
                found = re.search(r'href="(\?after=[^"]+)">Next merchants', shown.text)
                path = f"/dash/admin/merchants{found.group(1)}" if found else ""
            assert seen == [ids[:4], ids[4:8], ids[8:]] and path == ""
            for after in ("m09", "zzz", "m09\x00", "x" * 2_000, "\u00e9"):
                past = await client.get("/dash/admin/merchants", params={"after": after})
                assert past.status_code == 200 and "No merchants after these." in past.text
                assert 'href="?">First merchants' in past.text
            # A page whose records are all gone (ids left in the set) still leads on to the next one.
            for merchant_id in ids[4:8]:
                redis_client.delete(app.ctx.keys.merchant(merchant_id))
            hollow = await client.get("/dash/admin/merchants", params={"after": ids[3]})
            assert "No merchants after these." in hollow.text and f"?after={ids[7]}" in hollow.text
            for after in ("", "\x00", "A", "<script>"):
                first = await client.get("/dash/admin/merchants", params={"after": after})
                assert [row[0] for row in _table(first.text, "merchants")] == ids[:4]
                assert "<script>" not in first.text

    run(scenario())


def test_the_admin_lists_and_revokes_keys_on_the_keys_page(settings, redis_client, clickhouse) -> None:
    """The keys page lists a subject's keys by id and revokes one with the API's own function: the key
    fails its next API call and its dashboard session ends; bad lookups and revocations get a page."""

    def listed(html: str) -> list[str]:
        return re.findall(r'<tr data-key-id="([0-9a-f]{64})">', html)

    async def scenario():
        async with running_app(settings) as (_, client):
            first = await issue_key(client, creator_id="dora")
            second = await issue_key(client, creator_id="dora")
            await sign_in(client, first)
            assert (await client.get("/dash/creators/dora")).status_code == 200
            dora_session = client.cookies.get("ct_dash")
            client.cookies.clear()  # not signed out: the session stays open in Redis
            await sign_in(client, ADMIN_TOKEN)
            admin_session = client.cookies.get("ct_dash")
            client.cookies.set("ct_dash", dora_session, path="/dash")  # the control: it opens her page
            assert (await client.get("/dash/creators/dora")).status_code == 200
            client.cookies.set("ct_dash", admin_session, path="/dash")
            page = await client.get("/dash/admin/keys?scope=creator&subject_id=dora")
            assert page.status_code == 200
            assert sorted(listed(page.text)) == sorted([key_digest(first), key_digest(second)])
            assert first not in page.text and second not in page.text  # ids only, never the keys
            merchant = await client.get("/dash/admin/keys?scope=merchant&subject_id=dora")
            assert merchant.status_code == 200 and listed(merchant.text) == []

            revoked = await post_form(
                client,
                "/dash/admin/keys?scope=creator&subject_id=dora",
                "/dash/admin/keys/revoke",
                {"key_id": key_digest(first)},
            )
            # Post, then redirect: reloading the page shows the list again and revokes nothing.
            assert revoked.status_code == 303, revoked.text
            after = revoked.headers["location"]
            assert after == f"/dash/admin/keys?scope=creator&subject_id=dora&revoked={key_digest(first)}"
            for _ in range(2):
                page = await client.get(after)
                assert page.status_code == 200 and 'id="revoked"' in page.text
                assert listed(page.text) == [key_digest(second)]
            # A link naming a live key as revoked does not say so: one on this list, or another subject's.
            eve = await issue_key(client, creator_id="eve")
            for live_id in (key_digest(second), key_digest(eve)):
                live = await client.get(f"/dash/admin/keys?scope=creator&subject_id=dora&revoked={live_id}")
                assert live.status_code == 200 and 'id="revoked"' not in live.text
            links = "/api/links?creator_id=dora"
            assert (await client.get(links, headers={"authorization": f"Bearer {first}"})).status_code == 401
            assert (await client.get(links, headers={"authorization": f"Bearer {second}"})).status_code == 200
            for key_id, status in ((key_digest(first), 404), ("nothex", 422), ("", 422), ("A" * 64, 422)):
                refused = await post_form(
                    client, "/dash/admin/keys", "/dash/admin/keys/revoke", {"key_id": key_id}
                )
                assert refused.status_code == status, (key_id, refused.status_code)
            # A bad lookup: its error and its typed id on the list form, not on the issue form.
            for query, word, typed in (
                ("scope=root&subject_id=x", "creator&#39;s or a merchant", "x"),
                ("scope=creator&subject_id=a%20b", "1-64 characters", "a b"),
                ("scope=creator&subject_id=", "1-64 characters", ""),
                ("scope=creator", "1-64 characters", ""),
                ("subject_id=dora", "creator&#39;s or a merchant", "dora"),
                ("scope=merchant&subject_id=" + "x" * 65, "1-64 characters", "x" * 65),
            ):
                refused = await client.get(f"/dash/admin/keys?{query}")
                assert refused.status_code == 400 and word in refused.text, (query, refused.text[-600:])
                assert 'id="find-error"' in refused.text and 'id="form-error"' not in refused.text, query
                assert (
                    f'id="find-subject" name="subject_id" type="text" required value="{typed}"'
                    in refused.text
                )
                assert 'id="subject_id" name="subject_id" type="text" required value=""' in refused.text
            # The revoked key's dashboard session ends at its next request.
            client.cookies.set("ct_dash", dora_session, path="/dash")
            gone = await client.get("/dash/creators/dora")
            assert gone.status_code == 303 and gone.headers["location"].startswith("/dash/login")

    run(scenario())


def test_dash_is_a_reserved_code(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            refused = await client.post(
                "/api/links", json={"url": SHOP, "creator_id": "c", "code": "dash"}, headers=ADMIN
            )
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "reserved_code"
            assert (await client.get("/dash")).status_code == 303  # the dashboard, not a link lookup

    run(scenario())


def test_start_up_warns_of_links_a_reserved_code_hides(settings, redis_client, clickhouse, caplog) -> None:
    """Links stored as `dash` or `api` before those paths were reserved: start-up names each one."""

    async def scenario():
        async with running_app(settings) as (app, _):
            for code in ("dash", "api", "kept1"):
                link = Link(code=code, url=SHOP, creator_id="old", host="shop.example.com", created_at_ms=1)
                assert await app.ctx.links.create(link)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="clicktrail.api"):
            async with running_app(settings) as (_, client):
                assert (await client.get("/dash")).status_code == 303  # still the dashboard
        warned = [r.getMessage() for r in caplog.records if "is unreachable" in r.getMessage()]
        assert len(warned) == 2, warned
        assert "'api'" in warned[0] and "'dash'" in warned[1] and "creator old" in warned[1]

    run(scenario())


def test_sums_past_int64_are_a_422_page_never_a_wrapped_figure(settings, redis_client, clickhouse) -> None:
    """As the API's earnings: amounts whose sum ClickHouse cannot add exactly are refused with the reason,
    on the pages that show earnings or sales."""
    now_s = int(time.time())
    big = 4 * 10**18  # each row fits Int64; three do not
    rows = [("m1", f"O-{n}", "acc:0", "accrual", "pending", big, 1, "EUR", "alice", "S", 1, 0, 0, "", 0, "")
            for n in range(3)]  # fmt: skip
    data = [(*r, now_s, now_s * 1000, now_s * 1000) for r in rows]
    clickhouse.insert("commissions", LEDGER, [list(c) for c in zip(*data, strict=True)])

    async def scenario():
        async with running_app(settings) as (app, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            await add_merchant(app.ctx.redis, app.ctx.keys, "m1", ["shop.example.com"], now_s * 1000)
            for path in ("/dash/creators/alice", "/dash/creators/alice/earnings"):
                page = await client.get(path)
                assert page.status_code == 422, (path, page.status_code)
                assert "Int64" in page.text and "-" + str(big)[:5] not in page.text
            client.cookies.clear()
            await sign_in(client, ADMIN_TOKEN)
            page = await client.get("/dash/merchants/m1")  # creators ranked by sales: the same refusal
            assert page.status_code == 422 and "Int64" in page.text

    run(scenario())


def test_without_clickhouse_links_still_work_and_figures_say_why(settings, redis_client, clickhouse) -> None:
    closed = f"clickhouse://default:@127.0.0.1:{free_port()}/clicktrail"  # nothing listens there
    down = settings.model_copy(update={"clickhouse_url": closed})

    async def scenario():
        async with running_app(down) as (_, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            created = await post_form(
                client,
                "/dash/creators/alice/links",
                "/dash/creators/alice/links",
                {"url": SHOP, "code": "nock1"},
            )
            assert created.status_code == 303
            links = await client.get("/dash/creators/alice/links")
            assert links.status_code == 200 and "nock1" in links.text
            assert "Click counts are unavailable" in links.text
            for path in ("/dash/creators/alice", "/dash/creators/alice/earnings"):
                page = await client.get(path)
                assert page.status_code == 503, path
                assert "ClickHouse" in page.text and page.headers["content-type"].startswith("text/html")

    run(scenario())


@pytest.mark.cluster
def test_sessions_on_a_redis_cluster(cluster_settings, cluster_redis, clickhouse) -> None:
    """Sign-in, a form and sign-out with the session keys on the Redis Cluster (their own slot)."""

    async def scenario():
        async with running_app(cluster_settings) as (app, client):
            await sign_in(client, await issue_key(client, creator_id="alice"))
            created = await post_form(
                client,
                "/dash/creators/alice/links",
                "/dash/creators/alice/links",
                {"url": SHOP, "code": "clus1"},
            )
            assert created.status_code == 303 and (await app.ctx.links.get("clus1")).creator_id == "alice"
            pattern = cluster_settings.redis_prefix + "*dash:session:*"
            assert len(list(cluster_redis.scan_iter(match=pattern))) == 1
            await post_form(client, "/dash/creators/alice", "/dash/logout", {})
            assert (await client.get("/dash/creators/alice")).status_code == 303
            assert not list(cluster_redis.scan_iter(match=pattern))

    run(scenario())
