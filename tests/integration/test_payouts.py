"""Payout batches below HTTP, on ClickHouse 18.16 and on a current ClickHouse (chdb): the attributor books,
batches pay the approved rows booked before `until`, a reversal after a payout is netted by the next
batch, a failed payout's rows are paid again, concurrent requests make one batch, and a batch cut short
after its plan is finished by the next request without writing anything twice."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from attribution import events_out, explain, payouts
from attribution.attributor import Attributor
from attribution.payoutbook import STEP_FIELD, PayoutBook, PlanMismatch, WrongState
from core import queries
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks

HOUR, DAY = 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
SHOE = [("SKU-1", "shoes", 5990, 2)]  # 11980 × 10 % = 1198
HAT = [("SKU-2", "hats", 2500, 1)]  # 2500 × 10 % = 250


def balances(backend) -> dict[tuple[str, str, str], int]:
    rows = backend.execute(
        f"SELECT creator_id, currency, status, sum(amount_minor) FROM {backend.database}.commissions "
        "WHERE creator_id != '' GROUP BY creator_id, currency, status"
    )
    return {(c, cu, s): int(a) for c, cu, s, a in rows if int(a)}


def paid_twice(backend) -> int:
    """Ledger rows linked to more than one live payout (must be none). A row is (order, entry, run,
    creator, currency) and its amount: when only an order's click moves, one run books an entry's reversal
    of the old click and its row for the new one, for the same creator and currency, of opposite signs."""
    key = "order_id, entry_id, run_id, creator_id, currency, amount_minor"
    rows = backend.execute(
        f"SELECT count() FROM (SELECT {key}, sum(sign) AS s "
        f"FROM {backend.database}.payout_lines GROUP BY {key} HAVING s > 1)"
    )
    return int(rows[0][0])


def count_sweeps(book: PayoutBook, monkeypatch) -> list[int]:
    """A list that gets an item each time the book sweeps the ledger (`_settle`) from now on."""
    sweeps: list[int] = []
    settle = book._settle

    async def counted() -> None:
        sweeps.append(1)
        await settle()

    monkeypatch.setattr(book, "_settle", counted)
    return sweeps


def analyst_queries_run(backend) -> None:
    """Every SQL example of docs/money.md runs on this backend; the paid-twice check finds nothing."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "money.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    for block in blocks:
        for statement in filter(None, (part.strip() for part in block.split(";"))):
            sql = statement.replace("clicktrail.", f"{backend.database}.").replace("'duo", "'m1")
            rows = backend.execute(sql)
            if "HAVING sum(sign) > 1" in sql:
                assert int(rows[0][0]) == 0


def test_batches_net_reversals_and_pay_failed_rows_again(settings, backend) -> None:
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0,
                           currencies=["EUR", "USD"])  # fmt: skip
        clicks = {n: ids.new(T0 + i) for i, n in enumerate(["a1", "a2", "b1"])}
        insert_clicks(backend, [
            (clicks["a1"], T0, "alice", "m1", "shop.m1.example", 0, 0),
            (clicks["a2"], T0 + 1, "alice", "m1", "shop.m1.example", 0, 0),
            (clicks["b1"], T0 + 2, "bob", "m1", "shop.m1.example", 0, 0),
        ])  # fmt: skip
        await deliver(r, keys, "m1", "w1", "order.created", "O-1", clicks["a1"], T0 + HOUR, SHOE)
        await deliver(r, keys, "m1", "w2", "order.created", "O-2", clicks["a2"], T0 + HOUR, HAT, "USD")
        await deliver(r, keys, "m1", "w3", "order.created", "O-3", clicks["b1"], T0 + HOUR, HAT)
        ingest_orders(settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + 2 * HOUR)  # lock_days 0: approved at once
        book = PayoutBook(r, keys, lambda: backend)
        assert balances(backend) == {
            ("alice", "EUR", "approved"): 1198,
            ("alice", "USD", "approved"): 250,
            ("bob", "EUR", "approved"): 250,
        }

        # nothing booked before `until`: an empty batch; then two requests at once make one batch
        empty, created = await book.create_batch("m1", T0 + 2 * HOUR, 0, T0 + 3 * HOUR)
        assert created and empty.planned == []
        until = T0 + 2 * HOUR + 1
        (b1, c1), (b2, c2) = await asyncio.gather(
            book.create_batch("m1", until, 251, T0 + 3 * HOUR),
            book.create_batch("m1", until, 251, T0 + 3 * HOUR),
        )
        assert sorted([c1, c2]) == [False, True] and b1 == b2
        # bob's 250 and alice's 250 USD are below the minimum of 251: left for a later batch
        assert [(p.creator_id, p.currency, p.amount_minor, p.lines) for p in b1.planned] == [
            ("alice", "EUR", 1198, 1)
        ]
        alice_eur = b1.planned[0].payout_id
        lines = queries.payout_lines(backend, "m1", alice_eur)
        assert [
            (x.order_id, x.sku, x.quantity, x.basis_minor, x.rate_bps, x.amount_minor) for x in lines
        ] == [("O-1", "SKU-1", 2, 11980, 1000, 1198)]
        assert (await book.confirm(alice_eur, T0 + 4 * HOUR)).status == "paid"
        assert (await book.confirm(alice_eur, T0 + 4 * HOUR)).status == "paid"  # idempotent
        with pytest.raises(WrongState):
            await book.fail(alice_eur, T0 + 4 * HOUR)

        # a cancel after the payout: a negative approved balance, netted by the next batch
        await deliver(r, keys, "m1", "w4", "order.cancelled", "O-1", clicks["a1"], T0 + 5 * HOUR, [])
        await deliver(r, keys, "m1", "w5", "order.created", "O-4", clicks["a1"], T0 + 5 * HOUR, SHOE * 2)
        ingest_orders(settings.redis_url, keys, backend)
        await attributor.run_once(now_ms=T0 + 6 * HOUR)
        batch, created = await book.create_batch("m1", T0 + 6 * HOUR + 1, 0, T0 + 7 * HOUR)
        got = {(p.creator_id, p.currency): p for p in batch.planned}
        assert {k: (p.amount_minor, p.lines) for k, p in got.items()} == {
            (
                "alice",
                "EUR",
            ): (2 * 1198 - 1198, 3),  # O-4's two lines, less O-1's reversal
            ("alice", "USD"): (250, 1),
            ("bob", "EUR"): (250, 1),
        }
        # the USD payout fails: its row becomes payable again and the next batch pays it once more
        usd = got[("alice", "USD")].payout_id
        assert (await book.fail(usd, T0 + 8 * HOUR)).status == "failed"
        assert (await book.fail(usd, T0 + 8 * HOUR)).status == "failed"
        with pytest.raises(WrongState):
            await book.confirm(usd, T0 + 8 * HOUR)
        again, _ = await book.create_batch("m1", T0 + 8 * HOUR, 0, T0 + 9 * HOUR)
        assert [(p.creator_id, p.currency, p.amount_minor) for p in again.planned] == [("alice", "USD", 250)]
        assert paid_twice(backend) == 0
        # -1198 netted into the second payout: nothing approved is left, and the total is untouched
        assert balances(backend) == {
            ("alice", "EUR", "paid"): 1198,
            ("alice", "EUR", "in_payout"): 2 * 1198 - 1198,
            ("alice", "USD", "in_payout"): 250,
            ("bob", "EUR", "in_payout"): 250,
        }
        analyst_queries_run(backend)
        await r.aclose()

    asyncio.run(scenario())


def moved_credit_after_payout(settings, backend, move: str) -> None:
    """An order booked, approved and paid to alice; then its create dated earlier arrives, through bob's
    click (`creator`) or an earlier click of alice's (`click`). The run books the reversal under the old
    credit and the row under the new one: alice's next batch nets the reversal against her new earnings,
    bob's pays him; a rerun books nothing."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)
    new_creator = "bob" if move == "creator" else "alice"

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0)
        first, earlier = ids.new(T0 + 1), ids.new(T0)
        insert_clicks(backend, [
            (first, T0 + 1, "alice", "m1", "shop.m1.example", 0, 0),
            (earlier, T0, new_creator, "m1", "shop.m1.example", 0, 0),
        ])  # fmt: skip
        await deliver(r, keys, "m1", "w2", "order.created", "O-1", first, T0 + 2 * HOUR, SHOE)
        ingest_orders(settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + 3 * HOUR)
        book = PayoutBook(r, keys, lambda: backend)
        paid, _ = await book.create_batch("m1", T0 + 3 * HOUR + 1, 0, T0 + 4 * HOUR)
        assert [(p.creator_id, p.amount_minor) for p in paid.planned] == [("alice", 1198)]
        assert (await book.confirm(paid.planned[0].payout_id, T0 + 4 * HOUR)).status == "paid"

        # the same order created an hour earlier arrives late
        await deliver(r, keys, "m1", "w1", "order.created", "O-1", earlier, T0 + HOUR, SHOE)
        ingest_orders(settings.redis_url, keys, backend)
        await attributor.run_once(now_ms=T0 + 5 * HOUR)
        rows = queries.order_explanation(backend, "m1", "O-1")
        # each of alice's rows (the accrual and its approval transfer) reversed, saying why
        moved = sorted(
            (x.entry_id, x.kind, x.creator_id, x.click_id, x.status, x.amount_minor, x.orders)
            for x in rows
            if x.reason == "credit_moved"
        )
        assert moved == [
            ("acc:0", "reversal", "alice", first, "pending", -1198, -1),
            ("apr:0:approved", "reversal", "alice", first, "approved", -1198, 0),
            ("apr:0:pending", "reversal", "alice", first, "pending", 1198, 0),
        ]
        reversal = next(x for x in rows if x.reason == "credit_moved" and x.entry_id == "acc:0")
        assert explain.sentence(reversal) == (
            "Reversal for 2 × SKU-1 at 10 % of 119.80 EUR (default rate, version 1): the order is "
            "credited elsewhere now (another creator, click or currency): an order.created dated earlier "
            "arrived later."
        )
        # what the run announced: a reversal to alice (not a negative accrual or approval), a booking
        # and an approval to the new credit
        announced = events_out.commission_events([x for x in rows if x.booked_ms == T0 + 5 * HOUR])
        types = sorted((e.data["creator_id"], e.data["click_id"] == first, e.type) for e in announced)
        assert types == sorted([
            ("alice", True, "commission.reversed"),
            (new_creator, False, "commission.booked"),
            (new_creator, False, "commission.approved"),
        ])  # fmt: skip
        assert [e.data["amount_minor"] for e in announced if e.type == "commission.reversed"] == [-1198]
        net: dict[tuple[str, str], tuple[int, int]] = {}
        for x in rows:
            amount, orders = net.get((x.creator_id, x.click_id), (0, 0))
            net[(x.creator_id, x.click_id)] = (amount + x.amount_minor, orders + x.orders)
        assert {k: v for k, v in net.items() if k[0]} == {
            ("alice", first): (0, 0),
            (new_creator, earlier): (1198, 1),
        }
        ledger_rows = backend.execute(f"SELECT count() FROM {backend.database}.commissions")[0][0]
        await attributor.run_once(now_ms=T0 + 6 * HOUR)  # nothing changed: nothing appended
        assert backend.execute(f"SELECT count() FROM {backend.database}.commissions")[0][0] == ledger_rows

        # bob's batch pays him O-1; alice's reversal (-1198, or netted to 0 by the new click's row) is
        # carried, and must still be payable when she earns again: her next batch nets it
        bobs, _ = await book.create_batch("m1", T0 + 6 * HOUR, 0, T0 + 6 * HOUR)
        assert [(p.creator_id, p.amount_minor, p.lines) for p in bobs.planned] == (
            [("bob", 1198, 1)] if move == "creator" else []
        )
        await deliver(r, keys, "m1", "w3", "order.created", "O-2", first, T0 + 6 * HOUR, SHOE * 2)
        ingest_orders(settings.redis_url, keys, backend)
        await attributor.run_once(now_ms=T0 + 7 * HOUR)
        batch, _ = await book.create_batch("m1", T0 + 7 * HOUR + 1, 0, T0 + 8 * HOUR)
        planned = {p.creator_id: (p.amount_minor, p.lines) for p in batch.planned}
        if move == "creator":
            # alice: O-2's two lines (2 × 1198) less the reversal of O-1 paid to her
            assert planned == {"alice": (2 * 1198 - 1198, 3)}
        else:
            # one creator and currency: O-2, the reversal under the old click and the row of the new one
            assert planned == {"alice": (2 * 1198, 4)}
        for payout in [*bobs.planned, *batch.planned]:
            assert (await book.confirm(payout.payout_id, T0 + 8 * HOUR)).status == "paid"
        assert paid_twice(backend) == 0
        if move == "creator":
            expected = {("alice", "EUR", "paid"): 2 * 1198, ("bob", "EUR", "paid"): 1198}
        else:
            expected = {("alice", "EUR", "paid"): 3 * 1198}
        assert balances(backend) == expected
        again, _ = await book.create_batch("m1", T0 + 9 * HOUR, 0, T0 + 9 * HOUR)
        assert again.planned == []
        analyst_queries_run(backend)
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("move", ["creator", "click"])
def test_a_late_earlier_create_moves_a_paid_credit(settings, backend, move) -> None:
    moved_credit_after_payout(settings, backend, move)


def test_an_order_named_like_a_payout_never_touches_its_transfers(settings, backend) -> None:
    """An order event whose id is a payout's pseudo order (`payout:<id>`: refused by the webhook now, but
    one could be in the stream from before): its run read the payout's transfer rows as the order's
    ledger and reversed them, so the creator's paid amount went back to approved and the next batch paid
    it again."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0)
        alice, bob = ids.new(T0), ids.new(T0 + 1)
        insert_clicks(backend, [
            (alice, T0, "alice", "m1", "shop.m1.example", 0, 0),
            (bob, T0 + 1, "bob", "m1", "shop.m1.example", 0, 0),
        ])  # fmt: skip
        await deliver(r, keys, "m1", "w1", "order.created", "O-1", alice, T0 + HOUR, SHOE)
        ingest_orders(settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + 2 * HOUR)
        book = PayoutBook(r, keys, lambda: backend)
        batch, _ = await book.create_batch("m1", T0 + 2 * HOUR + 1, 0, T0 + 3 * HOUR)
        (payout,) = batch.planned
        await book.confirm(payout.payout_id, T0 + 3 * HOUR)
        assert balances(backend) == {("alice", "EUR", "paid"): 1198}
        # written to the stream as the webhook did before it refused such ids
        named = payouts.ORDER_PREFIX + payout.payout_id
        await deliver(r, keys, "m1", "w9", "order.created", named, bob, T0 + 4 * HOUR, HAT)
        await deliver(r, keys, "m1", "w10", "order.cancelled", named, bob, T0 + 4 * HOUR + 1, [])
        ingest_orders(settings.redis_url, keys, backend)
        stored = backend.execute(
            f"SELECT count() FROM {backend.database}.order_events WHERE order_id = %(o)s", {"o": named}
        )
        assert stored[0][0] == 2  # ingested as accepted then, not dead-lettered by the webhook's new rule
        for hour in (5, 6):
            await attributor.run_once(now_ms=T0 + hour * HOUR)
        assert balances(backend).get(("alice", "EUR", "paid")) == 1198
        assert ("alice", "EUR", "approved") not in balances(backend)
        later, _ = await book.create_batch("m1", T0 + 6 * HOUR + 1, 0, T0 + 7 * HOUR)
        assert [p.creator_id for p in later.planned] == []  # bob's order was cancelled; alice is paid
        assert paid_twice(backend) == 0
        await r.aclose()

    asyncio.run(scenario())


def test_a_batch_cut_short_is_finished_by_the_next_request(settings, backend, monkeypatch) -> None:
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0)
        click = ids.new(T0)
        insert_clicks(backend, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
        await deliver(r, keys, "m1", "w1", "order.created", "O-1", click, T0 + HOUR, SHOE)
        ingest_orders(settings.redis_url, keys, backend)
        await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 2 * HOUR)
        book = PayoutBook(r, keys, lambda: backend)
        real = book._insert

        async def crash(table, *args):
            if table == "commissions":
                raise ConnectionError("ClickHouse went away after the lines were written")
            await real(table, *args)

        monkeypatch.setattr(book, "_insert", crash)
        with pytest.raises(ConnectionError):
            await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 4 * HOUR)
        await r.delete(keys.attribution_lock)  # what the hold after a failed write expires into
        monkeypatch.setattr(book, "_insert", real)
        sweeps = count_sweeps(book, monkeypatch)
        # a batch for a later `until` first finishes the one cut short: it must not take its rows
        later, _ = await book.create_batch("m1", T0 + 3 * HOUR + 1, 0, T0 + 5 * HOUR)
        assert later.planned == []
        assert len(sweeps) == 1  # one sweep before the reads (a cluster's costs ~70 queries), not two
        batch, created = await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 5 * HOUR)
        assert not created and batch.booked and [p.amount_minor for p in batch.planned] == [1198]
        for _ in range(2):
            await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 5 * HOUR)
        assert balances(backend) == {("alice", "EUR", "in_payout"): 1198}
        assert len(queries.payout_lines(backend, "m1", batch.planned[0].payout_id)) == 1
        assert paid_twice(backend) == 0
        payout = await book.get(batch.planned[0].payout_id)
        assert payout is not None and payout.status == payouts.STATUS_IN_PAYOUT
        await r.aclose()

    asyncio.run(scenario())


async def _paid_batch(r, keys, ids, backend, redis_url: str) -> tuple[PayoutBook, str]:
    """m1 (10 %, no lock), alice's O-1 (1198) booked and paid by a batch up to T0 + 3 h: the book and
    that payout's id."""
    await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0)
    click = ids.new(T0)
    insert_clicks(backend, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
    await deliver(r, keys, "m1", "w1", "order.created", "O-1", click, T0 + HOUR, SHOE)
    ingest_orders(redis_url, keys, backend)
    await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 2 * HOUR)
    book = PayoutBook(r, keys, lambda: backend)
    batch, _ = await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 3 * HOUR)
    [paying] = batch.planned
    return book, paying.payout_id


def test_a_failure_while_a_batch_is_cut_short_finishes_the_batch_first(
    settings, backend, monkeypatch
) -> None:
    """Found by an adversarial pass: a batch cut short after its plan, then a payout's failure, which
    released rows the batch had not planned; the batch's finishing linked them too, so every later request
    raised PlanMismatch and the merchant could never pay again. Every write finishes the batch first."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        book, first = await _paid_batch(r, keys, ids, backend, settings.redis_url)
        hat_click = ids.new(T0 + 3 * HOUR)
        insert_clicks(backend, [(hat_click, T0 + 3 * HOUR, "alice", "m1", "shop.m1.example", 0, 0)])
        await deliver(r, keys, "m1", "w2", "order.created", "O-2", hat_click, T0 + 3 * HOUR, HAT)
        ingest_orders(settings.redis_url, keys, backend)
        await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 4 * HOUR)
        real = queries.link_payable

        def lost(*args, **kwargs):
            raise ConnectionError("ClickHouse went away before the lines were written")

        monkeypatch.setattr(queries, "link_payable", lost)
        with pytest.raises(ConnectionError):
            await book.create_batch("m1", T0 + 5 * HOUR, 0, T0 + 5 * HOUR)
        monkeypatch.setattr(queries, "link_payable", real)
        await r.delete(keys.attribution_lock)  # what the hold after a failed write expires into
        sweeps = count_sweeps(book, monkeypatch)
        failed = await book.fail(first, T0 + 6 * HOUR)
        assert failed is not None and failed.status == payouts.STATUS_FAILED
        assert len(sweeps) == 1  # the batch's finishing swept the ledger; the failure did not again
        cut_short, created = await book.create_batch("m1", T0 + 5 * HOUR, 0, T0 + 7 * HOUR)
        assert not created and cut_short.booked and [p.amount_minor for p in cut_short.planned] == [250]
        again, _ = await book.create_batch("m1", T0 + 7 * HOUR, 0, T0 + 7 * HOUR)
        assert [p.amount_minor for p in again.planned] == [1198]  # the failed payout's row, paid again
        assert balances(backend) == {("alice", "EUR", "in_payout"): 1448}
        assert paid_twice(backend) == 0
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("pre_release", "finishing_cut_short"), [(False, False), (True, False), (True, True)]
)
def test_a_failure_cut_short_is_finished_before_a_batch_reads_the_ledger(
    settings, backend, monkeypatch, pre_release: bool, finishing_cut_short: bool
) -> None:
    """Found by an adversarial pass: a failure that released its payout's rows but died before the
    transfers that take them back out of `in_payout`; a batch then paid the rows again (in_payout 2396,
    approved -1198 for 1198 earned). `pre_release`: the failure was cut short by a release that did not
    name the step under way (no STEP_FIELD in the hash); it is found by the payout's status.
    `finishing_cut_short`: and the first write's finishing of it is cut short too (helper-74: the field,
    written before, then hid the payout from every later write)."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        book, first = await _paid_batch(r, keys, ids, backend, settings.redis_url)
        real = book._insert_missing_transfers

        async def lost(*args):
            raise ConnectionError("ClickHouse went away after the lines were released")

        monkeypatch.setattr(book, "_insert_missing_transfers", lost)
        with pytest.raises(ConnectionError):
            await book.fail(first, T0 + 4 * HOUR)
        monkeypatch.setattr(book, "_insert_missing_transfers", real)
        await r.delete(keys.attribution_lock)
        assert (await book.get(first)).status == payouts.STATUS_FAILING
        if pre_release:
            assert await r.hdel(keys.payouts("m1"), STEP_FIELD) == 1
        if finishing_cut_short:
            settle = book._settle

            async def gone() -> None:
                raise ConnectionError("ClickHouse went away before the finishing began")

            monkeypatch.setattr(book, "_settle", gone)
            with pytest.raises(ConnectionError):
                await book.create_batch("m1", T0 + 5 * HOUR, 0, T0 + 5 * HOUR)
            monkeypatch.setattr(book, "_settle", settle)
            await r.delete(keys.attribution_lock)
        batch, _ = await book.create_batch("m1", T0 + 5 * HOUR, 0, T0 + 5 * HOUR)
        assert (await book.get(first)).status == payouts.STATUS_FAILED  # finished first
        assert [p.amount_minor for p in batch.planned] == [1198]
        assert balances(backend) == {("alice", "EUR", "in_payout"): 1198}
        assert paid_twice(backend) == 0
        assert (await book.fail(first, T0 + 6 * HOUR)).status == payouts.STATUS_FAILED  # idempotent still
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("with_payouts", [True, False])
def test_a_hash_from_before_the_step_field_is_read_whole_once(settings, backend, with_payouts: bool) -> None:
    """The hash of a merchant whose payouts an earlier release wrote (no STEP_FIELD) is scanned for a step
    under way by the first payout write only, whether or not it holds any payout (helper-73: a hash with
    none was scanned again by every write)."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario() -> list[int]:
        r = Redis.from_url(settings.redis_url)
        if with_payouts:
            book, _ = await _paid_batch(r, keys, ids, backend, settings.redis_url)
        else:
            await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
            book = PayoutBook(r, keys, lambda: backend)
            assert (await book.create_batch("m1", T0, 0, T0))[0].planned == []
        await r.hdel(keys.payouts("m1"), STEP_FIELD)
        scans = []
        real = r.hscan

        async def counted(*args, **kwargs):
            scans.append(1)
            return await real(*args, **kwargs)

        r.hscan = counted
        per_write = []
        for until in (T0 + 10 * HOUR, T0 + 11 * HOUR):
            before = len(scans)
            await book.create_batch("m1", until, 0, until)
            per_write.append(len(scans) - before)
        await r.aclose()
        return per_write

    first, second = asyncio.run(scenario())
    assert first >= 1 and second == 0, (first, second)


@pytest.mark.clickhouse
@pytest.mark.redis
def test_payout_benchmark_smoke(settings) -> None:
    """benchmarks/payouts.py at a tiny size, so it cannot rot: the batch pays every group the bare GROUP BY
    finds, and a second batch finds nothing left."""
    from benchmarks import payouts as bench

    figures = bench.run(3_000, settings.clickhouse_url, settings.redis_url, log=lambda *_: None)
    assert figures["ledger_rows"] == 3_100 and figures["payouts"] == 1_000 and figures["lines"] == 1_100


@pytest.mark.clickhouse
@pytest.mark.redis
def test_a_batch_and_an_attributor_run_exclude_each_other(settings, clickhouse, monkeypatch) -> None:
    """The ledger's writer lock: a batch waits for an attributor run (then is told to retry), and an
    attributor run cannot start while a batch writes."""
    from attribution import payoutbook
    from attribution.attributor import Busy

    migrate(clickhouse, log=lambda *_: None)
    keys = Keys(settings.redis_prefix)
    monkeypatch.setattr(payoutbook, "LOCK_WAIT_MS", 200)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, lock_days=0)
        book = PayoutBook(r, keys, lambda: clickhouse)
        await r.set(keys.attribution_lock, "an-attributor-run")
        with pytest.raises(payoutbook.LedgerBusy):
            await book.create_batch("m1", T0, 0, T0 + 1)
        assert not await r.hgetall(keys.payouts("m1"))  # nothing planned, nothing written
        await r.delete(keys.attribution_lock)
        entered, release = asyncio.Event(), asyncio.Event()
        real = queries.payable_totals

        def slow_totals(*args):
            asyncio.run_coroutine_threadsafe(_set(entered), loop)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
            return real(*args)

        loop = asyncio.get_running_loop()
        monkeypatch.setattr(queries, "payable_totals", slow_totals)
        batch = asyncio.create_task(book.create_batch("m1", T0, 0, T0 + 1))
        await entered.wait()
        with pytest.raises(Busy):
            await Attributor(r, keys, clickhouse, ClickIds(settings.secret_bytes)).run_once(now_ms=T0 + 2)
        release.set()
        assert (await batch)[1] is True
        assert not await r.exists(keys.attribution_lock)  # released after the batch
        await r.aclose()

    async def _set(event: asyncio.Event) -> None:
        event.set()

    asyncio.run(scenario())


def test_a_batch_that_cannot_finish_blocks_neither_confirms_nor_attribution(settings, backend) -> None:
    """Review: every payout write finishes the open batch first, so a batch whose lines can never match
    its plan (the state the bug above left) failed every confirm too, and held the ledger's lock (every
    merchant's attribution runs) 2 minutes a try. A confirm releases no rows: it does not wait for it."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        book, first = await _paid_batch(r, keys, ids, backend, settings.redis_url)
        until = T0 + 5 * HOUR
        stuck = payouts.Batch(
            payouts.batch_id_of("m1", until), "m1", until, 0, T0 + 5 * HOUR,
            [payouts.PlannedPayout("m1.00000000000000000000", "alice", "EUR", 999, 1)],
        )  # fmt: skip
        await r.hset(
            keys.payouts("m1"), mapping={f"batch:{until}": msgspec.json.encode(stuck), "open": until}
        )
        with pytest.raises(PlanMismatch):
            await book.fail(first, T0 + 6 * HOUR)
        assert await r.get(keys.attribution_lock) is None  # released: nothing was in flight
        confirmed = await book.confirm(first, T0 + 6 * HOUR)
        assert confirmed is not None and confirmed.status == payouts.STATUS_PAID
        assert balances(backend) == {("alice", "EUR", "paid"): 1198}
        await r.aclose()

    asyncio.run(scenario())


def test_a_resumed_batch_keeps_a_payout_stepped_meanwhile(settings, backend, monkeypatch) -> None:
    """Review: a batch is booked in slices of records, then marked booked; one cut short in between is
    finished by the next request, which wrote every record `in_payout` again, over a payout a release
    that does not finish the batch first (one running beside this one in an upgrade) had confirmed."""
    from attribution import payoutbook

    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, lock_days=0)
        for n, creator in enumerate(("alice", "bob")):
            click = ids.new(T0 + n)
            insert_clicks(backend, [(click, T0 + n, creator, "m1", "shop.m1.example", 0, 0)])
            await deliver(r, keys, "m1", f"w{n}", "order.created", f"O-{n}", click, T0 + HOUR, SHOE)
        ingest_orders(settings.redis_url, keys, backend)
        await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 2 * HOUR)
        book = PayoutBook(r, keys, lambda: backend)
        monkeypatch.setattr(payoutbook, "RECORDS_PER_WRITE", 1)
        real_hset, writes = r.hset, []

        async def cut(*args, **kwargs):
            writes.append(1)
            if len(writes) == 3:  # the plan, the first record, then the second record is lost
                raise ConnectionError("Redis went away between the slices")
            return await real_hset(*args, **kwargs)

        monkeypatch.setattr(r, "hset", cut)
        with pytest.raises(ConnectionError):
            await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 3 * HOUR)
        monkeypatch.setattr(r, "hset", real_hset)
        await r.delete(keys.attribution_lock)
        [written] = [f for f in await r.hkeys(keys.payouts("m1")) if f.startswith(b"payout:")]
        record = msgspec.json.decode(await r.hget(keys.payouts("m1"), written), type=payouts.Payout)
        paid = msgspec.structs.replace(record, status=payouts.STATUS_PAID)  # what the other release did
        await r.hset(keys.payouts("m1"), written, msgspec.json.encode(paid))
        batch, created = await book.create_batch("m1", T0 + 3 * HOUR, 0, T0 + 4 * HOUR)
        assert not created and batch.booked and len(batch.planned) == 2
        assert (await book.get(record.payout_id)).status == payouts.STATUS_PAID
        others = [p.payout_id for p in batch.planned if p.payout_id != record.payout_id]
        assert [(await book.get(p)).status for p in others] == [payouts.STATUS_IN_PAYOUT]
        await r.aclose()

    asyncio.run(scenario())
