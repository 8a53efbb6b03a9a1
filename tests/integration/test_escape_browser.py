"""A real headless Chromium (Debian's `chromium` and `chromium-driver`, installed by scripts/bootstrap.sh)
with an in-app user agent opens an `open_in: "browser"` short link served by a real `clicktrail serve`:
it gets the escape page, whose system-browser hand-off goes nowhere in a desktop browser, so the page
falls back to the destination (a local HTTP receiver; the link's public host is mapped to it inside the
browser). It must land there with the click id, and exactly one click must be recorded, naming the app,
in Redis and, after ingest, in ClickHouse. Missing Chromium is a failure, never a skip."""

from __future__ import annotations

import contextlib
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry

from core.keys import Keys
from core.migrate import migrate
from redirector.click import decode_batch
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import ADMIN
from tests.integration.servehelp import ServeProcess

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOP_HOST = "shop.example.com"  # a public name (links to loopback are refused), mapped to the receiver
LANDING_TIMEOUT_S = 20
AGENTS = {
    "tiktok": "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240105.004; wv) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Version/4.0 Chrome/121.0.6167.143 Mobile Safari/537.36 musical_ly_2023303040 JsSdk/1.0 "
    "NetType/WIFI Channel/googleplay AppName/musical_ly app_version/33.3.4 BytedanceWebview/d8a21c6",
    "instagram": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/22B83 Instagram 354.0.0.29.90 (iPhone12,8; iOS 18_1; en_US; en; scale=2.00; 750x1334)",
}


class Receiver:
    """The merchant: a local HTTP server that remembers every path it was asked for."""

    def __init__(self) -> None:
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                body = b"<!doctype html><title>landed</title><p>landed"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chromium(user_agent: str):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: scripts/bootstrap.sh installs chromium and chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--user-agent={user_agent}",
        f"--host-resolver-rules=MAP {SHOP_HOST} 127.0.0.1",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def test_inapp_browser_lands_on_the_destination_with_one_click(settings, redis_client, clickhouse) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    migrate(clickhouse, log=lambda _line: None)
    receiver = Receiver()
    server = ServeProcess(settings)
    landed: dict[str, str] = {}
    try:
        destination = f"http://{SHOP_HOST}:{receiver.port}/p/42?ref=video"
        for app, agent in AGENTS.items():
            created = httpx.post(
                server.url + "/api/links",
                json={"url": destination, "creator_id": "cr1", "open_in": "browser"},
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            driver = chromium(agent)
            try:
                driver.get(f"{server.url}/{created.json()['code']}?utm_source=tt")
                WebDriverWait(driver, LANDING_TIMEOUT_S).until(
                    lambda d: d.current_url.startswith(destination)
                )
                landed[app] = driver.current_url
                assert driver.title == "landed"
            finally:
                driver.quit()
    finally:
        server.stop()
        receiver.close()

    click_ids = {app: parse_qs(urlsplit(url).query)["ct_click"] for app, url in landed.items()}
    assert all(len(ids) == 1 for ids in click_ids.values()), landed
    assert all("utm_source=tt" in url for url in landed.values())
    # The merchant saw each visit once, with its click id; the page never went back through the short link.
    visits = [p for p in receiver.paths if p.startswith("/p/42")]
    assert sorted(visits) == sorted(urlsplit(url).path + "?" + urlsplit(url).query for url in landed.values())

    keys = Keys(settings.redis_prefix)
    recorded = [c for _, fields in redis_client.xrange(keys.clicks) for c in decode_batch(fields[b"c"])]
    assert sorted((c.click_id, c.inapp) for c in recorded) == sorted(
        (ids[0], app) for app, ids in click_ids.items()
    )

    with contextlib.redirect_stdout(None):
        status = run_streams(
            settings, stream_specs(settings), consumer="t", registry=CollectorRegistry(), once=True
        )
    assert status == 0
    rows = clickhouse.execute(f"SELECT click_id, inapp FROM {clickhouse.database}.clicks")
    assert sorted(rows) == sorted((ids[0], app) for app, ids in click_ids.items())
