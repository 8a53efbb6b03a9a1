"""The creator's links page shows LINKS_PER_PAGE links at a time, newest first (a page is rendered on the
event loop that answers redirects: its size must not grow with the creator's links)."""

from __future__ import annotations

import asyncio
import re

import pytest

from redirector.dash.views_creator import LINKS_PER_PAGE
from tests.integration.apphelp import make_link, running_app
from tests.integration.dashhelp import issue_key, sign_in

pytestmark = [pytest.mark.redis]
PAGE = "/dash/creators/alice/links"


def test_links_come_a_page_at_a_time(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            made = [
                (await make_link(client, "alice", f"https://shop.example/p/{n}"))["code"] for n in range(55)
            ]
            await sign_in(client, await issue_key(client, creator_id="alice"))
            shown = []
            for page, count in ((1, LINKS_PER_PAGE), (2, 55 - LINKS_PER_PAGE)):
                answer = await client.get(f"{PAGE}?page={page}")
                assert answer.status_code == 200
                codes = re.findall(r'<tr data-code="([^"]+)">', answer.text)
                assert len(codes) == count
                assert ("Older links" in answer.text) == (page == 1)
                assert ("Newer links" in answer.text) == (page == 2)
                shown += codes
            assert shown == made[::-1]  # newest first, each once
            assert (await client.get(PAGE)).text.count("<tr data-code=") == LINKS_PER_PAGE
            assert "No links on this page" in (await client.get(f"{PAGE}?page=3")).text
            for bad in ("0", "-1", "x", "1.5", "%EF%BC%91", "10001", "", "1" * 5000):
                assert (await client.get(f"{PAGE}?page={bad}")).status_code == 400, bad

    asyncio.run(scenario())
