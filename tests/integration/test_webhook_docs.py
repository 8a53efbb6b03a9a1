"""The signing examples of docs/webhooks.md, run as a merchant would copy them, against the real
server: each one's order is accepted (202). Node's example runs where `node` is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.servehelp import ServeProcess
from tests.integration.test_webhooks import MERCHANT

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def example(name: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S)
    assert found, f"docs/webhooks.md has no example {name}"
    return found.group(1)


def test_the_guide_examples_are_accepted(settings, redis_client, tmp_path: Path):
    runners = {
        "sign-python": [sys.executable, "-c"],
        "sign-curl": ["bash", "-euo", "pipefail", "-c"],
    }
    if shutil.which("node"):
        runners["sign-node"] = ["node", "-e"]
    server = ServeProcess(settings)
    try:
        created = httpx.post(
            server.url + "/api/merchants", json=MERCHANT, headers={"authorization": "Bearer admin-test-token"}
        )
        env = dict(
            os.environ,
            CLICKTRAIL_URL=server.url,
            MERCHANT_ID="brand1",
            WEBHOOK_SECRET=created.json()["webhook_secret"],
        )
        for name, runner in runners.items():
            done = subprocess.run(
                [*runner, example(name)], env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, (name, done.stderr)
            assert "202" in done.stdout and '"accepted"' in done.stdout, (name, done.stdout, done.stderr)
    finally:
        server.stop()
