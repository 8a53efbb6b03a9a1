"""Smart links on a real `clicktrail serve --workers 2`: `max_clicks` holds exactly under concurrent
requests spread over both workers, and a PATCH reaches both workers' caches within about a second."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.servehelp import ServeProcess

pytestmark = pytest.mark.redis

MAX_CLICKS = 25
ATTEMPTS = 120
# The link-change stream is tailed with a blocking read: a change is seen well within this.
VISIBLE_WITHIN_S = 1.0


def test_max_clicks_is_exact_across_two_workers_and_a_patch_is_seen_by_both(settings) -> None:
    server = ServeProcess(settings, workers=2)
    try:
        admin = {"authorization": f"Bearer {settings.admin_token}"}
        created = httpx.post(
            server.url + "/api/links",
            json={"url": "https://s.example.com/p", "creator_id": "c", "max_clicks": MAX_CLICKS},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        code = created.json()["code"]

        def one(_: int) -> int:
            # A new connection each time, so both workers take requests.
            return httpx.get(f"{server.url}/{code}", headers={"connection": "close"}).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(one, range(ATTEMPTS)))
        assert statuses.count(302) == MAX_CLICKS and statuses.count(410) == ATTEMPTS - MAX_CLICKS
        metrics = httpx.get(server.url + "/metrics").text
        assert "clicktrail_workers 2.0" in metrics

        # PATCH the destination: every worker serves the new one within about a second.
        plain = httpx.post(
            server.url + "/api/links",
            json={"url": "https://s.example.com/old", "creator_id": "c"},
            headers=admin,
        ).json()["code"]
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for _ in range(20):  # both workers cache the old destination
                assert (
                    client.get(f"{server.url}/{plain}")
                    .headers["location"]
                    .startswith("https://s.example.com/old")
                )
            patched = client.patch(
                f"{server.url}/api/links/{plain}", json={"url": "https://s.example.com/new"}, headers=admin
            )
            assert patched.status_code == 200, patched.text
            changed_at = time.monotonic()
            while True:
                locations = [client.get(f"{server.url}/{plain}").headers["location"] for _ in range(10)]
                if all(loc.startswith("https://s.example.com/new") for loc in locations):
                    break
                assert time.monotonic() - changed_at < VISIBLE_WITHIN_S, locations
                time.sleep(0.02)
    finally:
        server.stop()
