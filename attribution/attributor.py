"""The batch attributor: books the commission ledger from stored order events.

One run: take the orders that received events since the cursor (minus an overlap that covers inserts
made visible late), plus orders whose ledger may change with time alone (lock passed, or a click not
ingested yet); per order, fold all its events, find its click (a scan of the days named by the click id's
embedded time, after the id's MAC verified), apply the pure rules and append only the difference between
the desired and the stored ledger (see ledger.py). Running it again appends nothing.

One attributor runs at a time (a Redis lock): two concurrent runs could both append the same difference.
The cursor advances only after the run's rows are inserted, so a crash repeats work, never skips it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from attribution import ledger, rules
from attribution.events import event_of
from attribution.merchants import MerchantStore
from attribution.rates import RateStore
from core import clickid, queries
from core.clickhouse import Backend
from core.clock import now_ms as clock_ms
from core.keys import Keys
from core.rows import CommissionRow, columnar

ORDERS_PER_CHUNK = 2_000
# Inserts by a slow consumer become visible after faster ones; re-reading this much history costs only
# time (the ledger difference is empty) and covers any insert that takes less than the insert timeout.
CURSOR_OVERLAP_MS = 10 * 60_000
# An order whose click was not found is retried this long (the click may still be on its way in).
NO_CLICK_RETRY_MS = 2 * 86_400_000
LOCK_TTL_MS = 30 * 60_000
# After a failed run the lock is held this long: well past the ClickHouse insert timeout (20 s default).
FAILED_RUN_HOLD_MS = 120_000
# The click id's embedded time and the stored click time come from the same clock reading; allow skew.
CLICK_TIME_SLACK_MS = 5_000


# The ledger entry's fields are commissions columns of the same names (core/rows.py CommissionRow).
ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(ledger.Entry))


class Busy(RuntimeError):
    """Another attributor holds the lock."""


@dataclass
class Summary:
    orders: int = 0
    rows: int = 0
    amount_minor: int = 0
    skipped_unknown_merchant: int = 0
    stopped: bool = False  # ended early on a stop request; the cursor did not move
    outcomes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)  # ledger rows appended, by kind


class Attributor:
    def __init__(
        self, redis: Redis, keys: Keys, backend: Backend, ids: clickid.ClickIds, chunk: int = ORDERS_PER_CHUNK
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._backend = backend
        self._ids = ids
        self._chunk = chunk
        self._merchants = MerchantStore(redis, keys)
        self._rates = RateStore(redis, keys)

    async def run_once(
        self, now_ms: int | None = None, progress=None, stop: asyncio.Event | None = None
    ) -> Summary:
        """One batch. With `stop` set meanwhile, it ends after the chunk in hand and leaves the cursor where
        it was (the next run redoes the rest; what was booked is found already stored)."""
        now_ms = clock_ms() if now_ms is None else now_ms
        token = secrets.token_hex(8)
        if not await self._redis.set(self._keys.attribution_lock, token, nx=True, px=LOCK_TTL_MS):
            raise Busy("another attributor is running")
        try:
            summary = await self._run(now_ms, progress, stop)
        except BaseException:
            # An insert this run gave up on may still land on the server: keep other runs out until it
            # has, or they could read the ledger without it and append the same difference again.
            if (await self._redis.get(self._keys.attribution_lock)) == token.encode():
                await self._redis.pexpire(self._keys.attribution_lock, FAILED_RUN_HOLD_MS)
            raise
        if (await self._redis.get(self._keys.attribution_lock)) == token.encode():
            await self._redis.delete(self._keys.attribution_lock)
        return summary

    async def _run(self, now_ms: int, progress, stop: asyncio.Event | None) -> Summary:
        cursor = int(await self._redis.get(self._keys.attribution_cursor) or 0)
        new = await asyncio.to_thread(
            queries.orders_with_new_events, self._backend, max(0, cursor - CURSOR_OVERLAP_MS)
        )
        todo: dict[str, set[str]] = defaultdict(set)
        high_water = cursor
        for merchant_id, order_id, ingested_ms in new:
            todo[merchant_id].add(order_id)
            high_water = max(high_water, ingested_ms)
        retry_since_ms = now_ms - NO_CLICK_RETRY_MS
        revisit = await asyncio.to_thread(queries.orders_to_revisit, self._backend, retry_since_ms)
        terms = {m: await self._terms(m) for m in {r[0] for r in revisit} | set(todo)}
        for merchant_id, order_id, accrual_ms in revisit:
            merchant = terms.get(merchant_id)
            # accrual_ms is 0 for a refused order (no accrual): then it is a no_click retry.
            if merchant and (
                not int(accrual_ms) or rules.lock_ms(int(accrual_ms), merchant.lock_days) <= now_ms
            ):
                todo[merchant_id].add(order_id)
        summary = Summary()
        total = sum(len(v) for v in todo.values())
        run_id = f"{now_ms}-{secrets.token_hex(4)}"
        for merchant_id, order_ids in sorted(todo.items()):
            merchant = terms.get(merchant_id)
            if merchant is None:
                summary.skipped_unknown_merchant += len(order_ids)
                continue
            events = await self._events(merchant_id, sorted(order_ids))
            # Chunks in click-time order: each chunk's click lookup then reads a few days, not all of them.
            ordered = sorted(order_ids, key=lambda o: _click_time(events.get(o, [])))
            for start in range(0, len(ordered), self._chunk):
                chunk = ordered[start : start + self._chunk]
                await self._chunk_once(merchant, chunk, events, now_ms, run_id, summary)
                if progress:
                    progress(summary.orders + summary.skipped_unknown_merchant, total)
                if stop is not None and stop.is_set():
                    summary.stopped = True
                    return summary
        await self._redis.set(self._keys.attribution_cursor, high_water)
        return summary

    async def _terms(self, merchant_id: str) -> ledger.Terms | None:
        merchant = await self._merchants.get(merchant_id)
        versions = await self._rates.versions(merchant_id)
        if merchant is None or not versions:
            return None
        return ledger.Terms(
            merchant_id, merchant.attribution_window_days, merchant.lock_days, versions, merchant.currency
        )

    async def _events(self, merchant_id: str, order_ids: list[str]) -> dict[str, list[ledger.OrderEvent]]:
        """All events of the given orders (held in memory for the run: a few hundred bytes an order)."""
        events: dict[str, list[ledger.OrderEvent]] = defaultdict(list)
        for start in range(0, len(order_ids), self._chunk):
            chunk = order_ids[start : start + self._chunk]
            for row in await asyncio.to_thread(queries.order_events, self._backend, merchant_id, chunk):
                event = event_of(row)
                events[event.order_id].append(event)
        return events

    async def _chunk_once(
        self,
        terms: ledger.Terms,
        order_ids: list[str],
        all_events: dict[str, list[ledger.OrderEvent]],
        now_ms: int,
        run_id: str,
        summary: Summary,
    ) -> None:
        events = {o: all_events.pop(o, []) for o in order_ids}
        created = {o: ledger.fold(evs).created for o, evs in events.items()}
        facts = await self._click_facts({c.click_id for c in created.values() if c is not None})
        stored = await self._stored(terms.merchant_id, order_ids)
        rows = []
        for order_id in order_ids:
            order = created.get(order_id)
            click = facts.get(order.click_id) if order is not None else None
            wanted = ledger.desired(events.get(order_id, []), click, terms, now_ms)
            summary.orders += 1
            summary.outcomes[_outcome(wanted, order)] += 1
            for entry in ledger.difference(wanted, stored.get(order_id, {})):
                rows.append(_row(terms.merchant_id, order_id, entry, now_ms, run_id))
                summary.kinds[entry.kind] += 1
                summary.amount_minor += entry.amount_minor
        if rows:
            insert = self._backend.insert
            await asyncio.to_thread(insert, "commissions", CommissionRow.columns(), columnar(rows))
            summary.rows += len(rows)

    async def _click_facts(self, click_ids: set[str]) -> dict[str, rules.ClickFacts]:
        facts: dict[str, rules.ClickFacts] = {}
        lookup: dict[str, int] = {}
        for click_id in click_ids:
            ts_ms = clickid.timestamp_ms(click_id)
            if ts_ms is None or not self._ids.verify(click_id):
                # Never query for an id we did not mint: its embedded time is not to be trusted.
                facts[click_id] = rules.ClickFacts(click_id, ts_ms is not None, False)
            else:
                lookup[click_id] = ts_ms
        if not lookup:
            return facts
        days = set()
        for ts_ms in lookup.values():
            day = datetime.fromtimestamp(ts_ms / 1000, UTC).date()
            # The neighbouring days too: the recorded second may fall either side of midnight.
            days.update(str(day + timedelta(days=d)) for d in (-1, 0, 1))
        rows = await asyncio.to_thread(
            queries.clicks_by_id,
            self._backend,
            sorted(lookup),
            sorted(days),
            (min(lookup.values()) - CLICK_TIME_SLACK_MS) // 1000,
            (max(lookup.values()) + CLICK_TIME_SLACK_MS) // 1000 + 1,
        )
        found = {r[0]: r for r in rows}
        owners = await self._merchants.owners(sorted({r[4] for r in found.values() if not r[3]}))
        for click_id in lookup:
            row = found.get(click_id)
            if row is None:
                facts[click_id] = rules.ClickFacts(click_id, True, True, found=False)
                continue
            _, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head = row
            facts[click_id] = rules.ClickFacts(
                click_id,
                True,
                True,
                found=True,
                ts_ms=ts_ms,
                creator_id=creator_id,
                merchant_id=merchant_id,
                dest_host=dest_host,
                host_owner=owners.get(dest_host, ""),
                is_bot=bool(is_bot),
                is_head=bool(is_head),
            )
        return facts

    async def _stored(self, merchant_id: str, order_ids: list[str]) -> dict[str, dict[str, ledger.Entry]]:
        stored: dict[str, dict[str, ledger.Entry]] = defaultdict(dict)
        for row in await asyncio.to_thread(queries.ledger_for_orders, self._backend, merchant_id, order_ids):
            stored[row.order_id][row.entry_id] = ledger.Entry(**{f: getattr(row, f) for f in ENTRY_FIELDS})
        return stored


def _click_time(events: list[ledger.OrderEvent]) -> int:
    created = ledger.fold(events).created if events else None
    return (clickid.timestamp_ms(created.click_id) or 0) if created else 0


def _outcome(wanted: list[ledger.Entry], order: ledger.OrderEvent | None) -> str:
    if order is None:
        return "parked"
    for entry in wanted:
        if entry.kind == "none" and entry.entry_id.startswith("none:"):
            return entry.reason
    if not any(entry.kind == "accrual" for entry in wanted):
        # refused outright (currency_mismatch, amount_out_of_range): its one flag row says why
        return next((entry.reason for entry in wanted), "refused")
    return "credited"


def _row(merchant_id: str, order_id: str, entry: ledger.Entry, now_ms: int, run_id: str) -> CommissionRow:
    return CommissionRow(
        merchant_id=merchant_id,
        order_id=order_id,
        effective_at=entry.effective_ms // 1000,
        booked_ms=now_ms,
        run_id=run_id,
        **{f: getattr(entry, f) for f in ENTRY_FIELDS},
    )
