"""A payout batch for many creators and the statement of a payout of many lines are built off the event
loop: one merchant's request must not hold the loop its server's redirects share for the whole encode,
decode or render (found by an adversarial pass: 0.1-0.6 s for 10,000-50,000 creators, 0.5 s for a
statement of 200,000 lines). The bound is a share of the same work timed in the same test."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import msgspec
import orjson
import pytest
from redis.asyncio import Redis

from attribution import statement
from attribution.moneyapi import _batch_view
from attribution.payoutbook import PayoutBook
from attribution.payouts import Payout
from core import queries
from core.keys import Keys
from core.migrate import migrate
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant
from tests.integration.test_terms_off_loop import _longest_hold

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
T0 = 1_790_000_000_000
CREATORS, WHALE_LINES = 20_000, 100_000
UNTIL = "2026-11-30T00:00:00Z"
UNTIL_MS = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp() * 1000)


def _load(clickhouse) -> None:
    """One approved row for each of CREATORS creators, and WHALE_LINES for the creator `whale`."""
    select = (
        "SELECT 'm1', concat('O-', toString(number)), 'apr:0:approved', 'approval', 'approved', "
        "toInt64(100 + modulo(number, 900)), toInt8(0), 'EUR', "
        "if(number < %(creators)s, concat('creator', toString(number)), 'whale'), 'SKU-1', 1, 10000, 1000, "
        "toDateTime(intDiv(%(t0)s, 1000)), %(t0)s, %(t0)s + 1, 'r1' FROM numbers(%(rows)s)"
    )
    clickhouse.execute(
        f"INSERT INTO {clickhouse.database}.commissions (merchant_id, order_id, entry_id, kind, status, "
        "amount_minor, orders, currency, creator_id, sku, quantity, basis_minor, rate_bps, effective_at, "
        f"effective_ms, booked_ms, run_id) {select}",
        {"creators": CREATORS, "t0": T0, "rows": CREATORS + WHALE_LINES},
    )


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def test_a_big_batch_and_a_long_statement_do_not_hold_the_event_loop(settings, clickhouse) -> None:
    migrate(clickhouse, log=lambda *_: None)
    _load(clickhouse)
    keys = Keys(settings.redis_prefix)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - 86_400_000)
        await r.aclose()
        async with running_app(settings) as (app, client):
            request = client.post("/api/merchants/m1/payouts", json={"until": UNTIL}, headers=ADMIN)
            batch_hold_s, response = await _longest_hold(request)
            assert response.status_code == 201, response.text
            payouts = response.json()["payouts"]
            assert len(payouts) == CREATORS + 1
            [whale] = [p for p in payouts if p["creator_id"] == "whale"]
            assert whale["lines"] == WHALE_LINES
            url = f"/api/payouts/{whale['payout_id']}/statement.csv"
            statement_hold_s, response = await _longest_hold(client.get(url, headers=ADMIN))
            assert response.status_code == 200 and response.text.count("\n") == WHALE_LINES + 1

            # The same work, timed here on the loop (what each held it for before).
            book = PayoutBook(app.ctx.redis, keys, lambda: clickhouse)
            batch, created = await book.create_batch("m1", UNTIL_MS, 0, T0)
            assert not created
            fields = [f"payout:{p.payout_id}" for p in batch.planned]
            raws = await app.ctx.redis.hmget(keys.payouts("m1"), fields)
            records = [msgspec.json.decode(raw, type=Payout) for raw in raws]
            encode_s = _timed(lambda: [msgspec.json.encode(p) for p in records])
            answer_s = _timed(
                lambda: orjson.dumps(
                    _batch_view(batch, [msgspec.json.decode(raw, type=Payout) for raw in raws])
                )
            )
            lines = queries.payout_lines(clickhouse, "m1", whale["payout_id"])
            render_s = _timed(lambda: statement.render(lines))
        print(
            f"batch: held {batch_hold_s:.4f} s (encode {encode_s:.4f}, answer {answer_s:.4f}); "
            f"statement: held {statement_hold_s:.4f} s (render {render_s:.4f})"
        )
        # What is left on the loop is the longest single C call in the threads (orjson's dump of the answer,
        # the batch's encode) and redis-py packing a slice of records.
        assert batch_hold_s < (encode_s + answer_s) / 2, (batch_hold_s, encode_s, answer_s)
        assert statement_hold_s < render_s / 3, (statement_hold_s, render_s)

    asyncio.run(scenario())
