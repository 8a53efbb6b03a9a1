"""A name given twice in one request is refused with 400 and writes nothing, whatever the kind of input
(core/repeats.py says why): a query parameter on the API (JSON) and on the dashboard (an HTML page), a
dashboard form field, a key of a JSON body at any depth. A redirect's query is the viewer's and is passed
on as it came. Each refusal has its control: the same request with the name once is served."""

from __future__ import annotations

import asyncio

import pytest

from core.migrate import migrate
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.dashhelp import ADMIN_TOKEN, csrf_token, issue_key, sign_in

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

SHOP = "https://shop.example.com/p/1"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def migrated(clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)


def run(coro) -> None:
    asyncio.run(coro)


def assert_refused_json(response, code: str) -> None:
    assert response.status_code == 400, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code, response.text


# (path with the name twice, the same path with it once: served)
API_QUERIES = [
    ("/api/links?creator_id=alice&creator_id=bob", "/api/links?creator_id=alice"),
    # percent-encoded, the key reads the same once decoded
    ("/api/links?creator_id=alice&%63reator_id=bob", "/api/links?%63reator_id=alice"),
    # the same value twice is no less ambiguous to a check in front
    ("/api/links?creator_id=alice&creator_id=alice", "/api/links?creator_id=alice"),
    # a route that reads no query at all, blank values
    ("/api/fx?x&x", "/api/fx?x"),
    ("/api/keys?creator_id=alice&creator_id=", "/api/keys?creator_id=alice"),
    ("/api/creators/alice/clicks?from=2026-11-01&from=2026-01-01", "/api/creators/alice/clicks"),
    ("/healthz?probe=1&probe=2", "/healthz?probe=1"),
]


def test_a_query_parameter_given_twice_is_a_400_on_the_api(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "alice", SHOP)
            qr = f"/api/links/{link['code']}/qr.svg"
            queries = [*API_QUERIES, (f"{qr}?size=200&size=2000", f"{qr}?size=200")]
            for twice, once in queries:
                assert_refused_json(await client.get(twice, headers=ADMIN), "repeated_parameter")
                served = await client.get(once, headers=ADMIN)
                assert served.status_code == 200, (once, served.text)
            # refused before anything runs: a DELETE with a doubled query disables nothing
            doubled = await client.delete(f"/api/links/{link['code']}?a=1&a=2", headers=ADMIN)
            assert_refused_json(doubled, "repeated_parameter")
            assert (await client.get(f"/{link['code']}")).status_code == 302

    run(scenario())


def test_a_redirect_passes_a_repeated_query_on(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            link = await make_link(client, "alice", SHOP)
            answer = await client.get(f"/{link['code']}?utm=a&utm=b")
            assert answer.status_code == 302
            assert "utm=a&utm=b" in answer.headers["location"]

    run(scenario())


def test_a_dashboard_query_or_form_field_given_twice_is_a_400_page_and_writes_nothing(
    settings, redis_client, clickhouse
) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            # the sign-in page's `next`: which copy would a proxy in front have checked?
            login = await client.get("/dash/login?next=/dash/admin&next=https://elsewhere.example/")
            assert login.status_code == 400 and login.headers["content-type"].startswith("text/html")
            assert "elsewhere" not in login.text
            # the sign-in form's key twice opens no session
            form = await client.get("/dash/login")
            token = csrf_token(form.text)
            alice_key = await issue_key(client, creator_id="alice")
            body = f"csrf_token={token}&key={alice_key}&key={ADMIN_TOKEN}".encode()
            refused = await client.post("/dash/login", content=body, headers=FORM)
            assert refused.status_code == 400 and "twice" in refused.text
            assert not list(redis_client.scan_iter(match=settings.redis_prefix + "dash:session:*"))

            await sign_in(client, ADMIN_TOKEN)
            page = await client.get("/dash/creators/alice?days=7&days=30")
            assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
            assert "twice" in page.text
            assert (await client.get("/dash/creators/alice?days=7")).status_code == 200

            token = csrf_token((await client.get("/dash/admin/keys")).text)
            before = await app.ctx.auth.keys_of("creator", "bob")
            cases = [
                f"csrf_token={token}&scope=creator&subject_id=bob&subject_id=carol",
                f"csrf_token={token}&scope=creator&scope=merchant&subject_id=bob",
                f"csrf_token={token}&csrf_token={token}&scope=creator&subject_id=bob",
            ]
            for body in cases:
                answer = await client.post("/dash/admin/keys", content=body.encode(), headers=FORM)
                assert answer.status_code == 400, (body, answer.status_code)
                assert answer.headers["content-type"].startswith("text/html")
            assert await app.ctx.auth.keys_of("creator", "bob") == before
            assert await app.ctx.auth.keys_of("creator", "carol") == []
            once = f"csrf_token={token}&scope=creator&subject_id=bob".encode()
            assert (await client.post("/dash/admin/keys", content=once, headers=FORM)).status_code == 201
            assert len(await app.ctx.auth.keys_of("creator", "bob")) == len(before) + 1

    run(scenario())


# (JSON body with a key twice, at some depth) for POST /api/links; none may create a link
LINK_BODIES = [
    b'{"url": "%s", "creator_id": "alice", "creator_id": "bob"}' % SHOP.encode(),
    b'{"url": "https://elsewhere.example/", "url": "%s", "creator_id": "alice"}' % SHOP.encode(),
    b'{"url": "%s", "creator_id": "alice", "rules": [{"when": {"os": ["ios"], "os": ["android"]}, '
    b'"url": "%s"}]}' % (SHOP.encode(), SHOP.encode()),
    b'{"url": "%s", "creator_id": "alice", "variants": [{"url": "%s", "weight": 1, "weight": 99}, '
    b'{"url": "%s", "weight": 1}]}' % (SHOP.encode(), SHOP.encode(), SHOP.encode()),
]


def test_a_json_key_given_twice_is_a_400_and_writes_nothing(settings, redis_client, clickhouse) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            for body in LINK_BODIES:
                answer = await client.post("/api/links", content=body, headers=ADMIN)
                assert_refused_json(answer, "repeated_key")
                assert "twice" in answer.json()["error"]["message"]
            assert await app.ctx.links.by_creator("alice") == []
            assert await app.ctx.links.by_creator("bob") == []
            link = await make_link(client, "alice", SHOP)
            patch = b'{"url": "%s", "url": "https://elsewhere.example/"}' % SHOP.encode()
            answer = await client.patch(f"/api/links/{link['code']}", content=patch, headers=ADMIN)
            assert_refused_json(answer, "repeated_key")
            assert (await client.get(f"/{link['code']}")).headers["location"].startswith(SHOP)
            # the endpoint replay's body, parsed apart from the rest
            created = await client.post(
                "/api/endpoints",
                json={"url": "https://hooks.example.com/ct", "events": ["link.created"], "creator_id": "c"},
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            replay = f"/api/endpoints/{created.json()['id']}/replay"
            answer = await client.post(replay, content=b'{"since": 0, "since": 1}', headers=ADMIN)
            assert_refused_json(answer, "repeated_key")
            assert (await client.post(replay, content=b'{"since": 0}', headers=ADMIN)).status_code == 200

    run(scenario())
