"""A merchant's terms (every rate version and code) are decoded off the event loop: a trace asked of a
server for a merchant with a big catalog must not hold the loop its redirects share for the whole decode.
The bound is a share of the same decode timed in the same test, not a fixed time."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from attribution.attributor import Attributor
from attribution.codes import CodeStore, decode_all
from attribution.rates import RateStore, decode_versions
from core.clickid import ClickIds
from core.keys import Keys
from tests.integration.attributionhelp import add_merchant

pytestmark = [pytest.mark.redis]
DAY = 86_400_000
T0 = 1_790_000_000_000
VERSIONS, SKUS, CODES = 8, 80_000, 2_000


async def _longest_hold(work) -> tuple[float, object]:
    """The longest time the loop went without running a ready callback while `work` ran, and its result."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    try:
        result = await work
    finally:
        done = True
        await ticking
    return longest, result


def test_a_big_catalogs_terms_do_not_hold_the_event_loop(settings) -> None:
    keys = Keys(settings.redis_prefix)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
        rates, codes = RateStore(r, keys), CodeStore(r, keys)
        for version in range(VERSIONS):
            await rates.set_sku_rates("m1", T0 + version, {f"SKU-{n}": 100 + version for n in range(SKUS)})
        for n in range(CODES):
            await codes.put("m1", f"CODE{n}", f"creator{n}", None, T0)
        raw_versions, raw_codes = await rates.raw_versions("m1"), await codes.raw_all("m1")
        started = time.perf_counter()
        decode_versions(raw_versions), decode_all(raw_codes)
        whole_decode_s = time.perf_counter() - started

        attributor = Attributor(r, keys, None, ClickIds(settings.secret_bytes))  # terms read Redis only
        held_s, terms = await _longest_hold(attributor._terms("m1"))
        await r.aclose()
        assert len(terms.versions) == VERSIONS + 1 and len(terms.codes) == CODES
        assert terms.version_at(T0 + VERSIONS).skus["SKU-7"] == 100 + VERSIONS - 1
        # on the loop, the hold was the whole decode; in a thread, about one version's
        assert held_s < whole_decode_s / 3, (held_s, whole_decode_s)

    asyncio.run(scenario())
