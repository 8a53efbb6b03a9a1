"""`GET /api/links/{code}` carries the link's totals from the ClickHouse rollups."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from core.migrate import migrate
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def test_totals_after_ingestion(settings, redis_client, clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)

    async def make_clicks() -> str:
        async with running_app(settings) as (_, client):
            code = (await make_link(client, "c", "https://shop.example.com/p"))["code"]
            for _ in range(7):
                await client.get(
                    f"/{code}", headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
                )
            await client.get(
                f"/{code}", headers={"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
            )
            await client.head(f"/{code}")
            return code

    code = asyncio.run(make_clicks())
    assert (
        run_streams(settings, stream_specs(settings), consumer="t", registry=CollectorRegistry(), once=True)
        == 0
    )

    async def read() -> dict:
        async with running_app(settings) as (_, client):
            response = await client.get(f"/api/links/{code}", headers=ADMIN)
            assert response.status_code == 200
            return response.json()

    body = asyncio.run(read())
    assert body["totals"] == {"clicks": 9, "unique": 1, "bots": 2}


def test_link_is_served_without_totals_while_clickhouse_is_down(settings, redis_client) -> None:
    settings = settings.model_copy(update={"clickhouse_url": "clickhouse://default:@127.0.0.1:1/nowhere"})

    async def scenario() -> None:
        async with running_app(settings) as (_, client):
            code = (await make_link(client, "c", "https://shop.example.com/p"))["code"]
            response = await client.get(f"/api/links/{code}", headers=ADMIN)
            assert response.status_code == 200
            assert response.json()["totals"] is None and response.json()["code"] == code

    asyncio.run(scenario())
