"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, as in
test_escape_browser.py) against a real `clicktrail serve`: a creator signs in and creates a link with the
keyboard only (Tab, typing, Enter), the link is clicked (a real redirect to a local receiver) and a bot
fetches it too, the clicks are ingested and an order is attributed, and the reloaded overview shows the
chart and the numbers ClickHouse holds. Screenshots of the main pages are saved under
artifacts/screenshots/ (docs/screenshots/ keeps a copy for the README). Missing Chromium is a failure."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from attribution.attributor import Attributor
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from redirector.ingest.process import run_streams, stream_specs
from tests.integration.apphelp import ADMIN
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders
from tests.integration.servehelp import ServeProcess
from tests.integration.test_escape_browser import SHOP_HOST, Receiver, chromium

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = (1280, 900)
PHONE = (390, 844)
WAIT_S = 20
MAX_TABS = 30  # a form further than this from the top of its page is not keyboard-friendly
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def tab_to(driver, element_id: str) -> None:
    """Press Tab until the element with this id has the focus (the keyboard's way to a field)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys as Key

    for _ in range(MAX_TABS):
        if driver.switch_to.active_element.get_attribute("id") == element_id:
            return
        ActionChains(driver).send_keys(Key.TAB).perform()
    pytest.fail(f"#{element_id} not reached with {MAX_TABS} Tab presses on {driver.current_url}")


def type_and_enter(driver, text: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys as Key

    ActionChains(driver).send_keys(text).send_keys(Key.ENTER).perform()


def shoot(driver, name: str, size: tuple[int, int] = DESKTOP) -> None:
    driver.set_window_size(*size)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page, not just the window: the document's height, capped so a long table stays readable
    height = min(driver.execute_script("return document.documentElement.scrollHeight"), 2400)
    driver.set_window_size(size[0], max(size[1], height))
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(*size)


def fits_a_phone(driver) -> None:
    """On a phone's width the page never scrolls sideways (wide tables scroll inside their own box)."""
    driver.set_window_size(*PHONE)
    client, scrolled = driver.execute_script(
        "const d = document.documentElement; return [d.clientWidth, d.scrollWidth]"
    )
    driver.set_window_size(*DESKTOP)
    assert scrolled <= client, f"{driver.current_url} is {scrolled} px wide on a {client} px phone"


def sign_in(driver, base: str, key: str) -> None:
    """Sign in from the keyboard: Tab to the key field, type, Enter."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(base + "/dash/login")
    driver.execute_script("document.activeElement.blur()")  # start from the top of the page
    tab_to(driver, "key")
    type_and_enter(driver, key)
    WebDriverWait(driver, WAIT_S).until(lambda d: "/dash/login" not in d.current_url)


def cells(driver, section: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.CSS_SELECTOR, f"table#{section}, #{section} table")
    return [
        [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def test_a_creator_works_from_the_browser(settings, redis_client, clickhouse) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    migrate(clickhouse, log=lambda _line: None)
    keys = Keys.of(settings)
    receiver = Receiver()
    server = ServeProcess(settings)
    driver = None
    try:
        base = server.url
        admin = httpx.Client(base_url=base, headers=ADMIN)
        asyncio.run(_merchant(settings, keys))
        creator_key = admin.post("/api/keys", json={"creator_id": "cr1"}).json()["key"]
        merchant_key = admin.post("/api/keys", json={"merchant_id": "m1"}).json()["key"]
        driver = chromium(CHROME_UA)
        driver.set_window_size(*DESKTOP)

        # Sign in and create a link with the keyboard only.
        sign_in(driver, base, creator_key)
        assert urlsplit(driver.current_url).path == "/dash/creators/cr1"
        driver.get(base + "/dash/creators/cr1/links")
        tab_to(driver, "url")
        destination = f"http://{SHOP_HOST}:{receiver.port}/p/7"
        type_and_enter(driver, destination)
        WebDriverWait(driver, WAIT_S).until(lambda d: "created=" in d.current_url)
        code = parse_qs(urlsplit(driver.current_url).query)["created"][0]
        assert f"Link {code} created." in driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-code="{code}"]')
        assert (
            row.find_element(By.CSS_SELECTOR, "button[data-copy]").get_attribute("data-copy").endswith(code)
        )
        qr = row.find_element(By.CSS_SELECTOR, "img.qr")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr) > 0

        # A person clicks it in the browser (a real redirect), twice; a bot fetches it once.
        for _ in range(2):
            driver.get(f"{base}/{code}")
            WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url.startswith(destination))
        landed = driver.current_url
        bot = httpx.get(f"{base}/{code}", headers={"user-agent": BOT_UA})
        assert bot.status_code == 302
        click_id = parse_qs(urlsplit(landed).query)["ct_click"][0]

        # Ingest the clicks; the merchant reports an order of the click; the attributor books it.
        with contextlib.redirect_stdout(None):
            assert (
                run_streams(
                    settings, stream_specs(settings), consumer="t", registry=CollectorRegistry(), once=True
                )
                == 0
            )
        asyncio.run(_order(settings, keys, clickhouse, click_id))

        # The overview shows the chart and the figures ClickHouse holds.
        driver.get(base + "/dash/creators/cr1")
        svg = driver.find_element(By.CSS_SELECTOR, "#daily svg[role=img]")
        assert svg.get_attribute("aria-label")
        held = clickhouse.execute(
            "SELECT toString(day), sum(clicks) - sum(bot_clicks), sum(bot_clicks) "
            f"FROM {clickhouse.database}.creator_clicks_daily WHERE creator_id = 'cr1' GROUP BY day"
        )
        assert [(h, b) for _, h, b in held] == [(2, 1)]
        shown = {r[0]: (int(r[1]), int(r[2])) for r in cells(driver, "daily")}
        assert {d: v for d, v in shown.items() if v != (0, 0)} == {d: (h, b) for d, h, b in held}
        assert driver.find_element(By.ID, "total-human").text == "2"
        assert driver.find_element(By.ID, "total-bots").text == "1"
        shoot(driver, "creator-overview")
        shoot(driver, "creator-overview-phone", PHONE)
        fits_a_phone(driver)
        driver.get(base + "/dash/creators/cr1/links")
        link_row = driver.find_element(By.CSS_SELECTOR, f'tr[data-code="{code}"]').text
        assert " 3 " in f" {link_row} "  # all clicks of the link: 2 human + 1 bot (the rollup's total)
        fits_a_phone(driver)
        shoot(driver, "creator-links")
        driver.get(base + "/dash/creators/cr1/earnings")
        earned = (
            {r[0]: r for r in cells(driver, "earnings")} if driver.find_elements(By.ID, "earnings") else {}
        )
        assert earned["EUR"][3] == "8.00 EUR"  # 10 % of 80.00 EUR, pending
        assert "Order B-1" in driver.page_source
        fits_a_phone(driver)
        shoot(driver, "creator-earnings")

        sign_in(driver, base, merchant_key)
        assert urlsplit(driver.current_url).path == "/dash/merchants/m1"
        fits_a_phone(driver)
        shoot(driver, "merchant-overview")
        sign_in(driver, base, ADMIN["authorization"].split(" ", 1)[1])
        assert urlsplit(driver.current_url).path == "/dash/admin"
        fits_a_phone(driver)
        shoot(driver, "admin-health")
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
        receiver.close()
    assert time.monotonic() - started < 90


async def _merchant(settings, keys: Keys) -> None:
    client = Redis.from_url(settings.redis_url)
    try:
        await add_merchant(client, keys, "m1", [SHOP_HOST], int(time.time() * 1000), default_bps=1000)
    finally:
        await client.aclose()


async def _order(settings, keys: Keys, backend, click_id: str) -> None:
    """An order of 80.00 EUR with the click's id, through the real webhook acceptor, ingester and
    attributor (10 % default rate: 8.00 EUR pending)."""
    client = Redis.from_url(settings.redis_url)
    try:
        now = int(time.time() * 1000)
        await deliver(
            client, keys, "m1", "w1", "order.created", "B-1", click_id, now, [("SKU-1", "shoes", 8000, 1)]
        )
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        await Attributor(client, keys, backend, ClickIds(settings.secret_bytes)).run_once(now_ms=now + 1000)
    finally:
        await client.aclose()
