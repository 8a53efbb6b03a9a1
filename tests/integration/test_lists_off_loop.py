"""Long answers are built off the event loop, an item at a time (core.errors.json_list): a merchant's
codes (up to 10,000 of up to 200 assignments each) and the FX versions (never removed) held the loop
their server's redirects share 90-205 ms and 45-55 ms (an adversarial pass). Each bound is a share of the
same work timed in the same test, on the loop."""

from __future__ import annotations

import asyncio
import time

import msgspec
import orjson
import pytest
from redis.asyncio import Redis

from attribution import codes, fx
from attribution.codes import Span
from core.keys import Keys
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant
from tests.integration.test_terms_off_loop import _longest_hold

pytestmark = [pytest.mark.redis]
T0 = 1_790_000_000_000
CODES, ASSIGNMENTS, FX_VERSIONS = 10_000, 20, 8_760


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def test_a_merchants_codes_and_the_fx_versions_do_not_hold_the_event_loop(settings) -> None:
    keys = Keys(settings.redis_prefix)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - 86_400_000)
        history = {
            f"CODE{n}": msgspec.json.encode(
                [Span(f"code{n}", f"creator{a}", T0 + a, T0 + a + 1, 100 + a) for a in range(ASSIGNMENTS)]
            )
            for n in range(CODES)
        }
        await r.hset(keys.merchant_codes("m1"), mapping=history)
        rates = {f"C{n:02d}": f"1.{n:04d}" for n in range(30)}  # a year of hourly updates of 30 rates
        for start in range(0, FX_VERSIONS, 1000):
            await r.rpush(
                keys.fx_rates,
                *[
                    msgspec.json.encode(
                        {"base": "EUR", "rates": rates, "effective_ms": T0 + v, "set_ms": T0 + v}
                    )
                    for v in range(start, min(start + 1000, FX_VERSIONS))
                ],
            )
        await r.aclose()
        async with running_app(settings) as (_, client):
            codes_hold_s, response = await _longest_hold(client.get("/api/merchants/m1/codes", headers=ADMIN))
            assert response.status_code == 200
            listed = response.json()["codes"]
            assert len(listed) == CODES and len(listed[0]["spans"]) == ASSIGNMENTS
            fx_hold_s, response = await _longest_hold(client.get("/api/fx", headers=ADMIN))
            assert response.status_code == 200 and len(response.json()["versions"]) == FX_VERSIONS
        # The same work on the loop, as it was done there before.
        codes_s = _timed(
            lambda: orjson.dumps({"codes": [codes.view(s) for _, s in sorted(codes.decode_all(
                {k.encode(): v for k, v in history.items()}).items())]})
        )  # fmt: skip
        raws = [
            msgspec.json.encode({"base": "EUR", "rates": rates, "effective_ms": T0 + v, "set_ms": T0 + v})
            for v in range(FX_VERSIONS)
        ]
        fx_s = _timed(lambda: orjson.dumps({"versions": [v.as_dict() for v in fx.decode_versions(raws)]}))
        answer = {"codes": listed}
        dump_s = _timed(lambda: orjson.dumps(answer))
        print(
            f"codes: held {codes_hold_s:.4f} s of {codes_s:.4f} (the dump alone {dump_s:.4f}); "
            f"fx: held {fx_hold_s:.4f} s of {fx_s:.4f}"
        )
        # Before, the loop parsed the codes' hash, then dumped the answer whole: more than the dump alone.
        assert codes_hold_s < dump_s, (codes_hold_s, dump_s)
        assert fx_hold_s < fx_s / 2, (fx_hold_s, fx_s)

    asyncio.run(scenario())
