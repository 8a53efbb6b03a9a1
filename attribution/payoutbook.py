"""Payout batches, confirmations and failures against Redis (the records) and ClickHouse (the ledger
transfers and the payout lines); the rules are attribution/payouts.py.

Every write holds the ledger's writer lock (`Keys.attribution_lock`, the attributor's): while a batch
reads the payable rows and links them, no attributor run can append approvals or reversals and no second
batch, confirmation or failure can link or release rows. A request that cannot get it within
`LOCK_WAIT_MS` is told to retry (`LedgerBusy`).

A batch sums the payable rows per (creator, currency) in ClickHouse, plans the payouts, then links the
rows of each planned payout with one INSERT ... SELECT (the rows never travel through Python) and checks
that the lines add up to the plan before it books the transfers.

Crash safety: a batch first stores its plan (`booked: false`), then writes the missing payout lines, the
missing transfers, and last the payout records with `booked: true`. A repeated request finds the plan and
finishes it: rows the batch linked already are not linked again, transfers already stored are not
written again. A confirmation or failure first marks the payout `paying`/`failing` (and names it in
`STEP_FIELD`), then writes what is missing, then `paid`/`failed`.

Every write first finishes what a write cut short left (`_finish_cut_short`), whatever it was asked to
do: the step under way, and (for a batch or a failure, which release or take rows) the open batch. A
failure that released its rows but had not yet written its transfers, read by a new batch, had the rows
paid twice; a batch cut short, finished after a failure had released rows it did not plan, linked them
too and could never be finished (PlanMismatch: answered `409 batch_cannot_finish`, the lock released)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import TypeVar

import msgspec

from attribution import money, payouts
from attribution.payouts import Batch, Payout, PlannedPayout
from core import queries
from core.clickhouse import Backend, PartsInDoubt
from core.keys import Keys
from core.redisclient import hscan_values
from core.rows import CommissionRow, PayoutLineRow, columnar

T = TypeVar("T")
# How long a payout request waits for an attributor run to finish before it is told to retry.
LOCK_WAIT_MS = 5_000
LOCK_POLL_MS = 50
# A payout write is a few queries and two inserts; the lease outlives any of them.
LOCK_TTL_MS = 5 * 60_000
# After a failed write the lock is held this long: an insert given up on may still land (attributor.py).
FAILED_WRITE_HOLD_MS = 120_000


class LedgerBusy(RuntimeError):
    """The ledger's writer lock is held (an attributor run); retry shortly."""


# The field of `Keys.payouts` naming the `until_ms` of a batch planned but not booked yet ('' when none).
OPEN_FIELD = "open"
# The field naming the payout whose confirmation or failure began and did not end ('' when none).
STEP_FIELD = "step"
# Payout records a batch writes or reads in one command: packing one HSET of 20,000 fields held the event
# loop 20 ms.
RECORDS_PER_WRITE = 1_000


class PlanMismatch(RuntimeError):
    """A batch's linked lines do not add up to its plan (the ledger changed under the lock: a bug)."""


class WrongState(RuntimeError):
    """A confirm or fail from a state it cannot leave; the message says which."""


class PayoutBook:
    def __init__(self, redis, keys: Keys, backend: Callable[[], Backend]) -> None:
        self._redis = redis
        self._keys = keys
        self._backend = backend  # connected on first use: the server makes its ClickHouse client lazily

    # --- reads -------------------------------------------------------------------------------------
    async def get(self, payout_id: str) -> Payout | None:
        merchant_id = payouts.merchant_of(payout_id)
        if not merchant_id:
            return None
        raw = await self._redis.hget(self._keys.payouts(merchant_id), f"payout:{payout_id}")
        return None if raw is None else msgspec.json.decode(raw, type=Payout)

    async def lines(self, payout: Payout) -> list[PayoutLineRow]:
        return await asyncio.to_thread(
            queries.payout_lines, self._backend(), payout.merchant_id, payout.payout_id
        )

    async def rendered_lines(self, payout: Payout, render: Callable[[list[PayoutLineRow]], T]) -> T:
        """`render(lines)`, read and rendered in one thread, where the rows are also freed: a payout may
        pay hundreds of thousands of lines."""
        backend = self._backend()  # on the loop: the server connects lazily
        return await asyncio.to_thread(
            lambda: render(queries.payout_lines(backend, payout.merchant_id, payout.payout_id))
        )

    async def raw_payouts_of(self, batch: Batch) -> list[bytes]:
        """The batch's payout records as stored (`decode_payouts`): a batch may pay tens of thousands."""
        if not batch.planned:
            return []
        fields = [f"payout:{p.payout_id}" for p in batch.planned]
        raws = await self._read_fields(self._keys.payouts(batch.merchant_id), fields)
        return [raw for raw in raws if raw is not None]

    async def _read_fields(self, key: str, fields: list[str]) -> list[bytes | None]:
        """HMGET in slices of RECORDS_PER_WRITE: a batch's tens of thousands of fields in one command held
        the event loop to pack and parse."""
        raws: list[bytes | None] = []
        for start in range(0, len(fields), RECORDS_PER_WRITE):
            raws += await self._redis.hmget(key, fields[start : start + RECORDS_PER_WRITE])
        return raws

    # --- batches -----------------------------------------------------------------------------------
    async def create_batch(
        self, merchant_id: str, until_ms: int, min_amount_minor: int, now_ms: int
    ) -> tuple[Batch, bool]:
        """The batch of (merchant, until): made now (True) or the one made before (False)."""
        key = self._keys.payouts(merchant_id)
        async with self._lock():
            # Swept then, before it read; what it wrote since was all recorded.
            settled = await self._finish_cut_short(merchant_id, now_ms, until_ms)
            raw = await self._redis.hget(key, f"batch:{until_ms}")
            if raw is not None:
                batch = msgspec.json.decode(raw, type=Batch)
                if not batch.booked:
                    batch = await self._book(batch, now_ms, resumed=True)
                return batch, False
            batch_id = payouts.batch_id_of(merchant_id, until_ms)
            if not settled:
                await self._settle()
            backend = self._backend()

            def plan() -> tuple[Batch, bytes]:
                totals = queries.payable_totals(backend, merchant_id, until_ms, batch_id)
                planned = payouts.plan_totals(merchant_id, until_ms, min_amount_minor, totals)
                batch = Batch(batch_id, merchant_id, until_ms, min_amount_minor, now_ms, planned)
                return batch, msgspec.json.encode(batch)

            # In a thread, as every step of a batch that grows with its payouts (tens of thousands of
            # creators held the event loop 0.1-0.6 s, and the redirects that share it).
            batch, encoded = await asyncio.to_thread(plan)
            await self._redis.hset(key, mapping={f"batch:{until_ms}": encoded, OPEN_FIELD: until_ms})
            return await self._book(batch, now_ms, resumed=False), True

    async def _finish_cut_short(
        self, merchant_id: str, now_ms: int, until_ms: int | None = None, batch: bool = True
    ) -> bool:
        """Finish the batch and the confirmation or failure that writes cut short left, before another
        write reads the ledger (the batch of `until_ms` is left to its own request; `batch=False`: no
        batch, for a confirmation, which releases no rows a batch could take). True if any was (the
        ledger was swept then). Under the lock."""
        key = self._keys.payouts(merchant_id)
        unfinished, stepping = await self._redis.hmget(key, [OPEN_FIELD, STEP_FIELD])
        finished = False
        if batch and unfinished and int(unfinished) != until_ms:
            # A batch cut short plans rows that are still unlinked: finish it before another batch could
            # link them, or a failure release rows it would then link beyond its plan.
            raw = await self._redis.hget(key, f"batch:{int(unfinished)}")
            await self._book(msgspec.json.decode(raw, type=Batch), now_ms, resumed=True)
            finished = True
        # A failure cut short may have released its rows without the transfers that take them back out of
        # `in_payout`: a batch reading them now would pay them twice.
        if stepping is None:
            under_way = await self._under_way_by_status(key)  # records from before STEP_FIELD
        else:
            payout = await self.get(stepping.decode()) if stepping else None
            under_way = [payout] if payout is not None and payout.status in _STEP_OF else []
        for payout in under_way:
            await self._write_step(payout, _STEP_OF[payout.status], now_ms, swept=finished)
            finished = True
        if stepping is None:
            # Only once every step found is finished: written before, a finishing cut short would have
            # left a `failing` payout no later write looks for (helper-74: its rows were paid twice).
            await self._redis.hsetnx(key, STEP_FIELD, "")
        return finished

    async def _under_way_by_status(self, key: str) -> list[Payout]:
        """The payouts marked `paying` or `failing` in a hash that has no STEP_FIELD, which releases before
        it did not write (a step they cut short is found by its status alone). The caller writes STEP_FIELD
        once it has finished them (even in a hash of no payout), so that the hash is read whole once."""
        found: list[Payout] = []
        async for chunk in hscan_values(self._redis, key, RECORDS_PER_WRITE, "payout:*"):

            def stepping(raws: list[bytes] = chunk) -> list[Payout]:
                decoded = (msgspec.json.decode(raw, type=Payout) for raw in raws)
                return [payout for payout in decoded if payout.status in _STEP_OF]

            found += await asyncio.to_thread(stepping)
        return found

    async def _book(self, batch: Batch, now_ms: int, resumed: bool) -> Batch:
        """Write what of the batch is missing: its lines (linked inside ClickHouse), its transfers, then the
        payout records. Raises PlanMismatch, booking no transfer, if the lines do not add up to the plan."""
        if resumed:  # (a new batch was settled just before its plan was read)
            await self._settle()
        if batch.planned:
            backend = self._backend()

            def link() -> dict[str, tuple[int, int]]:
                with_by = queries.has_column(backend, "commissions", "attributed_by")
                queries.link_payable(
                    backend,
                    batch.merchant_id,
                    batch.until_ms,
                    batch.batch_id,
                    batch.min_amount_minor,
                    now_ms,
                    with_by,
                )
                return queries.batch_lines(backend, batch.merchant_id, batch.batch_id)

            linked = await asyncio.to_thread(link)
            transfers = await asyncio.to_thread(_checked_transfers, batch, linked, now_ms)
            if resumed:
                await self._insert_missing_transfers(batch.merchant_id, transfers)
            else:  # a new batch id: none of its transfers can exist yet
                await self._insert("commissions", CommissionRow, transfers)
        booked = msgspec.structs.replace(batch, booked=True)
        # Encoded in a thread: a batch of 50,000 payouts took 0.1-0.5 s, which held the event loop.
        records, booking = await asyncio.to_thread(_booked_records, booked, now_ms)
        key = self._keys.payouts(batch.merchant_id)
        if resumed:
            records = await self._not_stepped(key, records)
        # The records in slices (one HSET of 20,000 fields held the loop 20 ms to pack), then the batch
        # booked: a write cut short in between leaves the batch open, and whatever request comes next
        # writes them all again before anything else (`_finish_cut_short`).
        for start in range(0, len(records), RECORDS_PER_WRITE):
            await self._redis.hset(key, mapping=dict(records[start : start + RECORDS_PER_WRITE]))
        await self._redis.hset(key, mapping=booking)
        return booked

    async def _not_stepped(self, key: str, records: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """The records of a resumed batch that may be written: not those already confirmed or failed (or
        under way), which an earlier release's confirm, not finishing the open batch first, may have
        stepped while the batch was cut short between its slices."""
        stored = await self._read_fields(key, [name for name, _ in records])

        def keep() -> list[tuple[str, bytes]]:
            return [
                record
                for record, raw in zip(records, stored, strict=True)
                if raw is None or msgspec.json.decode(raw, type=Payout).status == payouts.STATUS_IN_PAYOUT
            ]

        return await asyncio.to_thread(keep)

    # --- confirm and fail --------------------------------------------------------------------------
    async def confirm(self, payout_id: str, now_ms: int) -> Payout | None:
        return await self._step(payout_id, payouts.CONFIRM, now_ms)

    async def fail(self, payout_id: str, now_ms: int) -> Payout | None:
        return await self._step(payout_id, payouts.FAIL, now_ms)

    async def _step(self, payout_id: str, step: str, now_ms: int) -> Payout | None:
        """in_payout → paid (confirm) or → failed (fail). Idempotent; WrongState from the other end."""
        busy, done = _STATES[step]
        async with self._lock():
            payout = await self.get(payout_id)
            if payout is None:
                return None
            swept = await self._finish_cut_short(payout.merchant_id, now_ms, batch=step == payouts.FAIL)
            if swept:
                payout = await self.get(payout_id) or payout  # this very step may be what was finished
            if payout.status == done:
                return payout
            if payout.status not in (payouts.STATUS_IN_PAYOUT, busy):
                public = payouts.PUBLIC_STATUS.get(payout.status, payout.status)
                raise WrongState(f"payout {payout_id} is {public}: it cannot be {done} now")
            return await self._write_step(payout, step, now_ms, swept)

    async def _write_step(self, payout: Payout, step: str, now_ms: int, swept: bool) -> Payout:
        """Mark the step under way, write what of it is missing, mark it done (under the lock). `swept`:
        the ledger was swept since the lock was taken (a cluster's sweep is about 70 queries)."""
        busy, done = _STATES[step]
        if not swept:
            await self._settle()
        await self._save(msgspec.structs.replace(payout, status=busy, updated_ms=now_ms), stepping=True)
        if step == payouts.FAIL:
            await self._release_lines(payout, now_ms)
        pair = _transfer_row(payout.merchant_id, _planned_of(payout), step, payout.batch_id, now_ms)
        await self._insert_missing_transfers(payout.merchant_id, list(pair))
        finished = msgspec.structs.replace(payout, status=done, updated_ms=now_ms)
        await self._save(finished, stepping=False)
        return finished

    async def _release_lines(self, payout: Payout, now_ms: int) -> None:
        backend = self._backend()
        counts = await asyncio.to_thread(
            queries.payout_line_counts, backend, payout.merchant_id, [payout.payout_id]
        )
        if counts.get((payout.payout_id, -1)):
            return
        linked = await self.lines(payout)
        released = [
            msgspec.structs.replace(row, sign=-1, created_at=now_ms // 1000, created_ms=now_ms)
            for row in linked
        ]
        await self._insert("payout_lines", PayoutLineRow, released)

    async def _save(self, payout: Payout, stepping: bool) -> None:
        """The payout's record, and in the same write whether its step is under way (`STEP_FIELD`)."""
        await self._redis.hset(
            self._keys.payouts(payout.merchant_id),
            mapping={
                f"payout:{payout.payout_id}": msgspec.json.encode(payout),
                STEP_FIELD: payout.payout_id if stepping else "",
            },
        )

    # --- ClickHouse writes ---------------------------------------------------------------------------
    async def _settle(self) -> None:
        """Before the reads that decide what to write (the payable ledger, the lines and transfers
        stored): on a cluster, rows of a commit ZooKeeper never recorded are set aside, or this raises.
        Read as stored, a transfer there would never be written, and then vanish (core/orphanparts.py)."""
        await asyncio.to_thread(self._backend().settle_unknown_parts)

    async def _insert(self, table: str, row_type, rows: list) -> None:
        if rows:
            backend = self._backend()
            await asyncio.to_thread(lambda: backend.insert(table, row_type.columns(), columnar(rows)))

    async def _insert_missing_transfers(self, merchant_id: str, rows: list[CommissionRow]) -> None:
        if not rows:
            return
        backend = self._backend()

        def missing() -> list[CommissionRow]:
            stored = queries.payout_transfers(backend, merchant_id, sorted({r.order_id for r in rows}))
            return [r for r in rows if (r.order_id, r.entry_id) not in stored]

        await self._insert("commissions", CommissionRow, await asyncio.to_thread(missing))

    # --- the ledger's writer lock --------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lock(self):
        key = self._keys.attribution_lock
        token = "payouts-" + secrets.token_hex(8)
        waited_ms = 0
        while not await self._redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            if waited_ms >= LOCK_WAIT_MS:
                raise LedgerBusy("the ledger is being written by an attribution run; retry in a few seconds")
            await asyncio.sleep(LOCK_POLL_MS / 1000)
            waited_ms += LOCK_POLL_MS
        try:
            yield
        except (WrongState, money.AmountOutOfRange, PartsInDoubt, PlanMismatch):
            # Refused before writing anything, or (PlanMismatch) after a link that has landed: nothing
            # in flight to wait for, and a hold would stop every merchant's attribution runs meanwhile.
            await self._unlock(key, token)
            raise
        except BaseException:
            if (await self._redis.get(key)) == token.encode():
                await self._redis.pexpire(key, FAILED_WRITE_HOLD_MS)
            raise
        await self._unlock(key, token)

    async def _unlock(self, key: str, token: str) -> None:
        if (await self._redis.get(key)) == token.encode():
            await self._redis.delete(key)


def _checked_transfers(batch: Batch, linked: dict[str, tuple[int, int]], now_ms: int) -> list[CommissionRow]:
    """The transfer rows that book a batch's payouts, once its linked lines add up to its plan
    (PlanMismatch otherwise)."""
    expected = {p.payout_id: (p.lines, p.amount_minor) for p in batch.planned}
    if linked != expected:
        wrong = sorted(set(linked.items()) ^ set(expected.items()))[:3]
        raise PlanMismatch(f"batch {batch.batch_id}: lines do not match the plan: {wrong}")
    pairs = [
        _transfer_row(batch.merchant_id, p, payouts.CREATE, batch.batch_id, now_ms) for p in batch.planned
    ]
    return [row for pair in pairs for row in pair]


def decode_payouts(raws: list[bytes]) -> list[Payout]:
    return [msgspec.json.decode(raw, type=Payout) for raw in raws]


def _booked_records(booked: Batch, now_ms: int) -> tuple[list[tuple[str, bytes]], dict[str, bytes | str]]:
    """The fields of the payouts hash that book a batch: each payout `in_payout`, then the batch booked and
    no batch open."""
    records = [
        (
            f"payout:{p.payout_id}",
            msgspec.json.encode(
                Payout(
                    p.payout_id,
                    booked.batch_id,
                    booked.merchant_id,
                    p.creator_id,
                    p.currency,
                    p.amount_minor,
                    p.lines,
                    payouts.STATUS_IN_PAYOUT,
                    now_ms,
                    now_ms,
                )
            ),
        )
        for p in booked.planned
    ]
    return records, {f"batch:{booked.until_ms}": msgspec.json.encode(booked), OPEN_FIELD: ""}


# Each step's state while under way and once done, and the step a state under way belongs to.
_STATES = {
    payouts.CONFIRM: (payouts.STATUS_PAYING, payouts.STATUS_PAID),
    payouts.FAIL: (payouts.STATUS_FAILING, payouts.STATUS_FAILED),
}
_STEP_OF = {busy: step for step, (busy, _) in _STATES.items()}


def _planned_of(payout: Payout) -> PlannedPayout:
    return PlannedPayout(
        payout.payout_id, payout.creator_id, payout.currency, payout.amount_minor, payout.lines
    )


def _transfer_row(
    merchant_id: str, planned, step: str, batch_id: str, now_ms: int
) -> tuple[CommissionRow, ...]:
    """The two ledger rows of one payout step (kind `payout`, the pseudo order `payout:<id>`)."""
    return tuple(
        CommissionRow(
            merchant_id=merchant_id,
            order_id=payouts.ORDER_PREFIX + planned.payout_id,
            entry_id=entry_id,
            kind=payouts.KIND_PAYOUT,
            status=status,
            amount_minor=amount,
            orders=0,
            currency=planned.currency,
            creator_id=planned.creator_id,
            click_id="",
            sku="",
            quantity=0,
            basis_minor=0,
            rate_bps=0,
            rate_rule="",
            rate_version=0,
            reason=step,
            event_id=batch_id,
            effective_at=now_ms // 1000,
            effective_ms=now_ms,
            booked_ms=now_ms,
            run_id=f"payout-{now_ms}",
        )
        for entry_id, status, amount in payouts.transfer(step, planned.amount_minor)
    )
