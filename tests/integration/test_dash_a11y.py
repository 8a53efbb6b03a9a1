"""Accessibility basics over every dashboard page (tests/integration/a11y.py), through HTTP: each GET
route of redirector/dash/routes.py is opened by the admin, and each user's own pages by that user (their
navigation differs), with data in them (a link, an order, a code, a delivery) so that tables, charts and
traces are drawn; plus the sign-in page, an error page and a form refused with its reason."""

from __future__ import annotations

import asyncio
import re

import pytest
from starlette.routing import Mount, Route

from attribution.attributor import Attributor
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from redirector.dash import routes as dash_routes
from tests.integration import a11y
from tests.integration.apphelp import make_link, running_app
from tests.integration.attributionhelp import ingest_orders
from tests.integration.dashhelp import ADMIN_TOKEN, post_form, sign_in
from tests.integration.merchantdash import setup, signed

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

# What each path parameter of a dashboard route is filled with. A route with a parameter not listed here
# fails the test: a new page is checked from the day it is added.
PARAMS = {"creator_id": "alice", "merchant_id": "brand", "order_id": "A-1"}
BROKEN = (
    '<html><body><h2>x</h2><h1>a</h1><h1>b</h1><h4>c</h4><input name="q"><img src="x">'
    '<svg><title>t</title></svg><button></button><a href="/x"></a><i id="d"></i><i id="d"></i></body></html>'
)


def dashboard_pages() -> list[str]:
    out = []
    for route in dash_routes.routes():
        if isinstance(route, Mount) or not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        if "{rest:path}" in route.path or route.path.endswith(".svg"):  # the 404 page; images, not pages
            continue
        names = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        missing = [n for n in names if n not in PARAMS]
        assert not missing, f"{route.path}: add {missing} to PARAMS"
        out.append(re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m.group(1)], route.path))
    return out


def test_the_checker_finds_each_kind_of_problem() -> None:
    found = a11y.problems(BROKEN)
    for expected in (
        "<html> has no lang",
        "2 <h1>",
        "the first heading is h2",
        "heading h4 follows h1",
        "<input name='q'> has no <label for>",
        "<img src='x'> has no alt",
        "<svg> without role=img",
        "<button > has no text",
        "<a /x> has no text",
        "duplicate ids ['d']",
    ):
        assert any(expected in problem for problem in found), (expected, found)
    good = '<html lang="en"><h1>a</h1><h2>b</h2><label for="q">Q</label><input id="q" name="q">'
    good += '<a href="/"><img src="x" alt="home"></a><svg role="img" aria-label="chart"><text>1</text></svg>'
    assert a11y.problems(good + "<button>Go</button></html>") == []


def test_every_dashboard_page_passes_the_basics(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (app, client):
            made = await setup(client)
            await make_link(client, "alice", "https://shop.brand.example/p/1")
            checked: dict[str, list[str]] = {}

            async def check(url: str, who: str, expect: tuple[int, ...] = (200,)) -> None:
                shown = await client.get(url)
                assert shown.status_code in expect, (url, who, shown.status_code)
                checked[f"{url} ({who})"] = a11y.problems(shown.text)

            await check("/dash/login", "nobody")
            await sign_in(client, made["brand"])
            await post_form(client, "/dash/merchants/brand/codes", "/dash/merchants/brand/codes",
                            {"code": "ALICE10", "creator_id": "alice"})  # fmt: skip
            body, headers = signed(made["brand_secret"], "msg-1", "A-1", ["alice10"])
            assert (
                await client.post("/webhooks/orders/brand", content=body, headers=headers)
            ).status_code == 202
            keys = Keys.of(settings)
            await asyncio.to_thread(ingest_orders, settings.redis_url, keys, clickhouse)
            await Attributor(app.ctx.redis, keys, clickhouse, ClickIds(settings.secret_bytes)).run_once()
            for url in dashboard_pages():
                if url.startswith("/dash/merchants/brand"):
                    await check(url, "merchant")
            refused = await post_form(
                client, "/dash/merchants/brand/codes", "/dash/merchants/brand/codes", {"code": "x"}
            )
            checked["refused code form (merchant)"] = a11y.problems(refused.text)
            await check("/dash/creators/alice", "merchant", (403,))
            await check("/dash/no/such/page", "merchant", (404,))

            for who, key, prefix in (
                ("creator", made["alice"], "/dash/creators/alice"),
                ("admin", ADMIN_TOKEN, ""),
            ):
                client.cookies.clear()
                await sign_in(client, key)
                for url in dashboard_pages():
                    if url.startswith(prefix) and url not in ("/dash", "/dash/", "/dash/login"):
                        await check(url, who)
            assert len(checked) >= 12, sorted(checked)
            bad = {page: found for page, found in checked.items() if found}
            assert not bad, bad

    asyncio.run(scenario())
