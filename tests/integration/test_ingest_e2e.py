"""End to end: N redirects through the real app, then `run_streams(once=True)`: exactly N rows in
ClickHouse, with the click ids of the Location headers, the links mirrored, and the link totals right."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry

from core import queries
from core.migrate import migrate
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import running_app

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Version/17.1 Mobile/15E148 Safari/604.1"


def test_redirects_become_rows(settings, redis_client, clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)

    async def redirects() -> tuple[list[str], list[str], int]:
        from tests.integration.apphelp import make_link

        async with running_app(settings) as (_app, client):
            links = [
                await make_link(client, "cr1", "https://shop.example/p/1"),
                await make_link(client, "cr2", "https://other.example/x?a=1"),
            ]
            codes = [link["code"] for link in links]
            ids = []
            for i in range(120):
                headers = {"user-agent": PHONE if i % 4 else f"agent-{i % 3} Mozilla/5.0 (Windows NT 10.0)"}
                response = await client.get(f"/{codes[i % 2]}", headers=headers)
                assert response.status_code == 302
                ids += parse_qs(urlsplit(response.headers["location"]).query)["ct_click"]
            heads = 0
            for _ in range(5):
                response = await client.head(f"/{codes[0]}", headers={"user-agent": PHONE})
                assert response.status_code == 302
                heads += 1
        return codes, ids, heads

    codes, ids, heads = asyncio.run(redirects())
    status = run_streams(
        settings, stream_specs(settings), consumer="e2e", registry=CollectorRegistry(), once=True
    )
    assert status == 0
    db = clickhouse.database
    stored = {row[0] for row in clickhouse.execute(f"SELECT click_id FROM {db}.clicks WHERE is_head = 0")}
    assert queries.click_count(clickhouse) == len(ids) + heads
    assert stored == set(ids)
    # All clicks come from one client address: per link, one unique visitor per user agent and hour.
    totals = queries.link_totals_sync(clickhouse, codes[0])
    assert totals["clicks"] == 60 + heads and totals["bots"] == heads
    assert 4 <= totals["unique"] <= 8  # 4 user agents (8 if the run straddles an hour)
    mirrored = queries.latest_links(clickhouse, codes)
    assert {code: link["creator_id"] for code, link in mirrored.items()} == {codes[0]: "cr1", codes[1]: "cr2"}
