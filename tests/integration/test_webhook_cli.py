"""`clicktrail webhook send` against the real server, and `clicktrail webhook verify` on requests the
send command really made (captured by a local receiver): what it accepts and exactly what it reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.receivers import Receiver
from tests.integration.servehelp import ServeProcess, settings_env
from tests.integration.test_webhooks import MERCHANT

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ORDER = {
    "type": "order.created",
    "data": {
        "order_id": "A-1001",
        "click_id": "",
        "currency": "EUR",
        "occurred_at": "2026-11-27T10:00:00Z",
        "items": [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}],
    },
}


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clicktrail.cli", "webhook", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_send_to_the_server_and_verify_captured_requests(settings, redis_client, tmp_path: Path):
    body_file = tmp_path / "order.json"
    body_file.write_text(json.dumps(ORDER, indent=2) + "\n")
    server = ServeProcess(settings)
    try:
        created = httpx.post(
            server.url + "/api/merchants", json=MERCHANT, headers={"authorization": "Bearer admin-test-token"}
        )
        secret = created.json()["webhook_secret"]
        send = ["send", "--url", server.url, "--merchant", "brand1", "--secret", secret]
        first = cli(settings, *send, "--id", "msg_cli_1", str(body_file))
        assert first.returncode == 0 and first.stdout.startswith("202 Accepted\n"), (
            first.stdout + first.stderr
        )
        assert '"accepted"' in first.stdout
        again = cli(settings, *send, "--id", "msg_cli_1", str(body_file))
        assert again.returncode == 0 and again.stdout.startswith("200 OK\n") and '"duplicate"' in again.stdout
        wrong = cli(settings, *send[:-1], "whsec_" + "A" * 32, str(body_file))
        assert wrong.returncode == 1 and wrong.stdout.startswith("401 ") and "bad_signature" in wrong.stdout
    finally:
        server.stop()

    async def capture() -> tuple[dict, bytes]:
        receiver = await Receiver(status=202).start()
        try:
            base = f"http://127.0.0.1:{receiver.port}"
            args = [
                "webhook",
                "send",
                "--url",
                base,
                "--merchant",
                "brand1",
                "--secret",
                secret,
                str(body_file),
            ]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "clicktrail.cli", *args, env=settings_env(settings)
            )
            assert await proc.wait() == 0
            return receiver.requests[0].headers, receiver.requests[0].body
        finally:
            await receiver.close()

    headers, body = asyncio.run(capture())
    head_file, captured = tmp_path / "headers.txt", tmp_path / "body.json"
    head_file.write_text(
        "POST /webhooks/orders/brand1 HTTP/1.1\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())
    )
    captured.write_bytes(body)
    ok = cli(settings, "verify", "--secret", secret, "--headers", str(head_file), str(captured))
    assert (ok.returncode, ok.stdout) == (0, "OK: the signature and the timestamp are valid\n")

    captured.write_bytes(body.rstrip(b"\n"))  # a proxy that trimmed the body
    trimmed = cli(settings, "verify", "--secret", secret, "--headers", str(head_file), str(captured))
    assert trimmed.returncode == 1
    assert (
        "FAIL: no signature matches this secret: the body was modified: it lost a trailing newline"
        in trimmed.stdout
    )

    whole = tmp_path / "request.http"  # the whole request in one file, without --headers
    whole.write_bytes(head_file.read_bytes().replace(b"webhook-id: ", b"x-was-id: ") + b"\n" + body)
    missing = cli(settings, "verify", "--secret", secret, str(whole))
    assert (missing.returncode, missing.stdout) == (1, "FAIL: missing header webhook-id\n")
