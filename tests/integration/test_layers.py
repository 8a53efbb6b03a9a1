"""The server process loads what the redirect and the API need, and nothing of the ingest process: no
ClickHouse driver until an API call needs ClickHouse, no enrichment data, no user-agent parser. (The
static direction of imports is import-linter's job: see pyproject.toml and scripts/test.sh.)

One exception, on demand: a smart link with a country rule, served to a viewer whose country no trusted
header gives, needs the offline country database (geoip2fast, the same the ingester uses). The server
loads it then, once per worker (redirector/geo.py), and still nothing else of the ingest process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.servehelp import settings_env

pytestmark = pytest.mark.redis

# Loaded only by the ingest process (or, for the driver, by the first API call that reads ClickHouse).
NOT_IN_SERVER = (
    "clickhouse_driver",
    "redirector.ingest",
    "geoip2fast",
    "ua_parser",
    "crawleruseragents",
    "chdb",
)

SERVER = """
import asyncio, json, sys
from clicktrail import cli  # what `clicktrail serve` imports, then the app it builds
from core.settings import Settings
from tests.integration.apphelp import make_link, running_app

async def main():
    async with running_app(Settings.load()) as (app, client):
        link = await make_link(client, "layers", "https://shop.example.com/p")
        assert (await client.get("/" + link["code"])).status_code == 302
        assert (await client.get("/metrics")).status_code == 200
        before = sorted(sys.modules)
        totals = (await client.get("/api/links/" + link["code"], headers={"authorization": "Bearer "
                  + app.settings.admin_token})).json()["totals"]
        after = sorted(sys.modules)
        rules = [{"when": {"country": ["GB"]}, "url": "https://shop.example.com/uk"}]
        smart = await make_link(client, "layers", "https://shop.example.com/p", rules=rules)
        assert (await client.get("/" + smart["code"])).status_code == 302
        return before, after, sorted(sys.modules)

before, after, country_rule = asyncio.run(main())
print(json.dumps({"before": before, "after": after, "country_rule": country_rule}))
"""


def loaded(modules: list[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_the_server_loads_nothing_of_the_ingest_process(settings) -> None:
    shown = subprocess.run(
        [sys.executable, "-c", SERVER],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    modules = json.loads(shown.stdout.strip().splitlines()[-1])
    assert [name for name in NOT_IN_SERVER if loaded(modules["before"], name)] == []
    # the first API call that reads ClickHouse loads the driver (and shows the check above can fail)
    assert loaded(modules["after"], "clickhouse_driver")
    assert not loaded(modules["after"], "geoip2fast")
    # a country rule without a country header loads the country database, and only that
    assert [name for name in NOT_IN_SERVER if loaded(modules["country_rule"], name)] == [
        "clickhouse_driver",
        "geoip2fast",
    ]
