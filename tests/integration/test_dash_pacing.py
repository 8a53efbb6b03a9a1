"""Dashboard pages share the worker with the redirects (issue 15): when pages have used up their share
(`dash_max_share_pct`), the next page waits for its turn while redirects keep being answered at once; a
page within its share is served at once; too many waiting pages get a 503 page, never a queue without end.
Real Redis and ClickHouse, the app in process."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.migrate import migrate
from redirector.dash import pacing
from tests.integration.apphelp import make_link, running_app
from tests.integration.dashhelp import issue_key, sign_in

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

PAGE = "/dash/creators/cr1/links"


@pytest.fixture(autouse=True)
def migrated(clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)


def test_pages_wait_for_their_share_and_redirects_do_not(settings) -> None:
    async def main() -> None:
        async with running_app(settings.model_copy(update={"dash_max_share_pct": 1})) as (app, client):
            code = (await make_link(client, "cr1", "https://shop.example.com/p/1"))["code"]
            assert (await sign_in(client, await issue_key(client, creator_id="cr1"))).status_code == 303
            assert (await client.get(PAGE)).status_code == 200  # within the burst: at once
            # As if pages had just taken 2 s of the worker: at 1 %, the next waits minutes.
            app.ctx.dash.pacer.spend(2.0)
            waiting = asyncio.create_task(client.get(PAGE))
            started = time.perf_counter()
            for _ in range(20):
                redirect = await client.get(f"/{code}")
                assert redirect.status_code == 302
            assert time.perf_counter() - started < 5  # 20 redirects, none behind the page
            await asyncio.sleep(0.2)
            assert not waiting.done()
            waiting.cancel()

    asyncio.run(main())


def test_a_full_queue_answers_busy(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "MAX_WAITING", 2)

    async def main() -> None:
        async with running_app(settings.model_copy(update={"dash_max_share_pct": 1})) as (app, client):
            assert (await sign_in(client, await issue_key(client, creator_id="cr1"))).status_code == 303
            app.ctx.dash.pacer.spend(2.0)
            queued = [asyncio.create_task(client.get(PAGE)) for _ in range(3)]
            await asyncio.sleep(0.2)
            refused = await client.get(PAGE)
            assert refused.status_code == 503
            assert "busy" in refused.text
            assert refused.headers["cache-control"] == "no-store"
            assert not any(task.done() for task in queued)
            for task in queued:
                task.cancel()

    asyncio.run(main())
