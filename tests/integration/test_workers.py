"""`serve --workers 2`: both workers redirect and record, and /metrics from either shows the sum."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.integration.servehelp import ServeProcess

pytestmark = pytest.mark.redis

REDIRECTS = 200


def test_two_workers_share_the_port_and_the_metrics(settings) -> None:
    server = ServeProcess(settings, workers=2)
    try:
        admin = {"authorization": f"Bearer {settings.admin_token}"}
        created = httpx.post(
            server.url + "/api/links",
            json={"url": "https://s.example.com/", "creator_id": "c"},
            headers=admin,
        )
        code = created.json()["code"]
        # No keep-alive: a new connection each time, so both workers take some.
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for _ in range(REDIRECTS):
                assert client.get(f"{server.url}/{code}").status_code == 302
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            text = httpx.get(server.url + "/metrics").text
            workers = re.search(r"^clicktrail_workers (\S+)$", text, re.M)
            count = re.search(r'^clicktrail_redirects_total\{method="GET",status="302"\} (\S+)$', text, re.M)
            seen.append((workers and workers[1], count and count[1]))
            if seen[-1] == ("2.0", f"{REDIRECTS}.0"):
                break
            time.sleep(0.2)
        assert seen[-1] == ("2.0", f"{REDIRECTS}.0"), seen[-5:]
    finally:
        server.stop()
