"""The batch attributor: books the commission ledger from stored order events.

One run: take the orders that received events since the cursor (minus an overlap that covers inserts
made visible late), plus orders whose ledger may change with time alone (lock passed, or a click not
ingested yet); per order, fold all its events, find its click (clicklookup.py: a scan of the days named
by the click id's embedded time, after the id's MAC verified), apply the pure rules and append only the
difference between the desired and the stored ledger (booking.py, ledger.py). Running it again appends
nothing.

Reads are set-based, not per order: the run's events and stored ledger in a few queries in order-id order
(those tables' sort key), then the orders in chunks of click-time order (chunks.py), one click query per
chunk over the days its ids name; the ledger rules run in Python per order, the chunk's rows go in one
insert. The
chunks overlap (`_book_chunks`): while one chunk's rules run, the next chunk's clicks are read and the
writes of the two chunks before go on (the backend runs two queries at once, core/clickhouse.py).

One attributor runs at a time (a Redis lock): two concurrent runs could both append the same difference.
The cursor advances only after the run's rows are inserted, so a crash repeats work, never skips it.
With lanes (lanes.py, `CLICKTRAIL_ATTRIBUTION_WORKERS`), worker processes book some of a run's orders,
disjoint whole click days of them, under the run's id, lock and cursor (`_book_merchant`, `book_lane`).

Commission events (events_out.py) are announced at least once for every booked row group: a chunk's
events are staged in Redis before its insert, emitted after it, then unstaged. A run that dies in between
leaves them staged; the next run (which holds the lock only once any insert of the dead run has landed or
never will, see FAILED_RUN_HOLD_MS) emits those whose rows are stored (same event ids: emission keeps each
id once) and drops the others, whose rows it then books and announces itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from redis.asyncio import Redis

from attribution import codes, events_out, ledger, review, rules, trace
from attribution.booking import Booking, Summary, add, book_chunk, entry_fields_of
from attribution.chunks import ORDERS_PER_CHUNK, click_time, day_chunks
from attribution.clicklookup import ClickLookup
from attribution.codes import CodeStore
from attribution.collector import full_collections_held
from attribution.events import event_of_facts
from attribution.inflight import finished, gathered, settled
from attribution.lanes import Lanes, deal
from attribution.merchants import Merchant, MerchantStore, policy_snapshot
from attribution.outbox import Outbox
from attribution.rates import RateStore, decode_versions
from core import clickid, queries
from core.clickhouse import Backend, PartsInDoubt
from core.clock import now_ms as clock_ms
from core.keys import Keys
from core.redisclient import ReplicasBehind, eval_replicated
from core.rows import CommissionRow, columnar

log = logging.getLogger(__name__)

# Inserts by a slow consumer become visible after faster ones; re-reading this much history costs only
# time (the ledger difference is empty) and covers any insert that takes less than the insert timeout.
CURSOR_OVERLAP_MS = 10 * 60_000
# An order whose click was not found is retried this long (the click may still be on its way in).
NO_CLICK_RETRY_MS = 2 * 86_400_000
LOCK_TTL_MS = 30 * 60_000
# After a failed run the lock is held this long: well past the ClickHouse insert timeout (20 s default).
FAILED_RUN_HOLD_MS = 120_000
# Chunks whose writes may overlap: one's ledger insert with another's Redis staging and emission.
WRITES_IN_FLIGHT = 2


class _Stop(Protocol):
    """A stop request: the run's asyncio.Event, or in a lane's worker the event it shares with the run."""

    def is_set(self) -> bool: ...


class Busy(RuntimeError):
    """Another attributor holds the lock."""


@dataclass
class _Run:
    """What every chunk of a run (or of a lane of it) books under: its time and id, the summary it adds
    to, its progress report and its stop request."""

    now_ms: int
    run_id: str
    summary: Summary
    progress: object
    total: int
    stop: _Stop | None


# With `min_replicas_acked`: the lock counts as held once this many replicas have it (a lock only on a
# primary that fails over would let a second attributor in). KEYS: the lock. ARGV: token, TTL (ms).
_CONFIRM_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
LOCK_WAIT_TIMEOUT_MS = 2_000


class Attributor:
    # The pure part of a chunk (booking.py), an attribute so that a test or the benchmark can wrap it.
    _book = staticmethod(book_chunk)

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        backend: Backend,
        ids: clickid.ClickIds,
        chunk: int = ORDERS_PER_CHUNK,
        min_replicas_acked: int = 0,
        outbox: Outbox | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self._lanes = lanes
        self._min_replicas = min_replicas_acked
        self._redis = redis
        self._keys = keys
        self._backend = backend
        self._chunk = chunk
        self._merchants = MerchantStore(redis, keys)
        self._clicks = ClickLookup(backend, ids, self._merchants)
        self._rates = RateStore(redis, keys)
        self._codes = CodeStore(redis, keys)
        self._reviews = review.ReviewStore(redis, keys)
        self._outbox = outbox or Outbox(redis, keys)

    async def run_once(
        self, now_ms: int | None = None, progress=None, stop: asyncio.Event | None = None
    ) -> Summary:
        """One batch. With `stop` set meanwhile, it ends after the chunk in hand and leaves the cursor where
        it was (the next run redoes the rest; what was booked is found already stored)."""
        now_ms = clock_ms() if now_ms is None else now_ms
        token = secrets.token_hex(8)
        if not await self._redis.set(self._keys.attribution_lock, token, nx=True, px=LOCK_TTL_MS):
            raise Busy("another attributor is running")
        if self._min_replicas:
            await self._confirm_lock(token)
        try:
            with full_collections_held():
                summary = await self._run(now_ms, progress, stop)
        except PartsInDoubt:
            # Refused before reading or writing anything (`_run`'s first step): no insert can land later.
            if (await self._redis.get(self._keys.attribution_lock)) == token.encode():
                await self._redis.delete(self._keys.attribution_lock)
            raise
        except BaseException:
            # An insert this run gave up on may still land on the server: keep other runs out until it
            # has, or they could read the ledger without it and append the same difference again.
            if (await self._redis.get(self._keys.attribution_lock)) == token.encode():
                await self._redis.pexpire(self._keys.attribution_lock, FAILED_RUN_HOLD_MS)
            raise
        if (await self._redis.get(self._keys.attribution_lock)) == token.encode():
            await self._redis.delete(self._keys.attribution_lock)
        return summary

    async def _confirm_lock(self, token: str) -> None:
        """Hold the lock only once replicas have it (the PEXPIRE follows the SET in the replication
        stream, so a WAIT after it covers both); otherwise give it back and report Busy."""
        lock = self._keys.attribution_lock
        args = [token, LOCK_TTL_MS]
        try:
            held = await eval_replicated(
                self._redis, _CONFIRM_LOCK, [lock], args, self._min_replicas, LOCK_WAIT_TIMEOUT_MS
            )
        except ReplicasBehind:
            held = 0
            if (await self._redis.get(lock)) == token.encode():
                await self._redis.delete(lock)
        if not held:
            raise Busy("the attributor lock could not be replicated; try again")

    async def _run(self, now_ms: int, progress, stop: asyncio.Event | None) -> Summary:
        # On a cluster, rows of a commit ZooKeeper never recorded (an insert that failed with "Unknown
        # status", maybe in a run of another process) are set aside first: read as stored, they would
        # keep this run from booking rows that vanish later, and announce their events.
        await asyncio.to_thread(self._backend.settle_unknown_parts)
        unreadable = await self._announce_staged(now_ms)
        cursor = int(await self._redis.get(self._keys.attribution_cursor) or 0)
        # The three lists of orders to look at are independent reads: made at once (the backend runs
        # two queries side by side).
        new, decided, revisit = await gathered(
            asyncio.to_thread(
                queries.orders_with_new_events, self._backend, max(0, cursor - CURSOR_OVERLAP_MS)
            ),
            self._reviews.to_revisit(),  # orders a review decision arrived for
            asyncio.to_thread(queries.orders_to_revisit, self._backend, now_ms - NO_CLICK_RETRY_MS),
        )
        todo: dict[str, set[str]] = defaultdict(set)
        high_water = cursor
        for merchant_id, order_id, ingested_ms in new:
            todo[merchant_id].add(order_id)
            high_water = max(high_water, ingested_ms)
        for merchant_id, order_id in decided:
            todo[merchant_id].add(order_id)
        terms = {m: await self._terms(m) for m in {r[0] for r in revisit} | set(todo)}
        for merchant_id, order_id, accrual_ms in revisit:
            merchant = terms.get(merchant_id)
            # accrual_ms is 0 for a refused order (no accrual): then it is a no_click retry.
            if merchant and (
                not int(accrual_ms) or rules.lock_ms(int(accrual_ms), merchant.lock_days) <= now_ms
            ):
                todo[merchant_id].add(order_id)
        summary = Summary(staged_dead_lettered=unreadable)
        total = sum(len(v) for v in todo.values())
        run = _Run(now_ms, f"{now_ms}-{secrets.token_hex(4)}", summary, progress, total, stop)
        for merchant_id, order_ids in sorted(todo.items()):
            merchant = terms.get(merchant_id)
            if merchant is None:
                summary.skipped_unknown_merchant += len(order_ids)
                continue
            if not await self._book_merchant(merchant, sorted(order_ids), run):
                summary.stopped = True
                return summary
        await self._redis.set(self._keys.attribution_cursor, high_water)
        await self._reviews.revisited(decided)
        return summary

    async def _book_merchant(self, terms: ledger.Terms, order_ids: list[str], run: _Run) -> bool:
        """Book one merchant's orders (sorted), in lanes when there are workers and more than a chunk of
        orders (attribution/lanes.py). False: stopped."""
        lanes = self._lanes
        if lanes is None or len(order_ids) <= self._chunk:
            return await self._book_orders(terms, order_ids, run)
        click_ids = await asyncio.to_thread(
            queries.order_click_ids, self._backend, terms.merchant_id, order_ids
        )
        click_ms = {o: clickid.timestamp_ms(c) or 0 for o, c in click_ids.items()}
        ordered = sorted(order_ids, key=lambda o: click_ms.get(o, 0))
        own, *others = deal(day_chunks(ordered, click_ms, self._chunk), lanes.count)
        others = [sorted(lane) for lane in others if lane]
        if not others:
            return await self._book_orders(terms, sorted(own), run)
        elsewhere = asyncio.ensure_future(lanes.book(others, terms, run.now_ms, run.run_id, run.stop))
        # The run's progress counts the workers' lanes as they go, not only once the merchant is done.
        report = run.progress
        own_run = replace(
            run, progress=(lambda done, total: report(done + lanes.booked(), total)) if report else None
        )
        try:
            completed = await self._book_orders(terms, sorted(own), own_run) if own else True
        except BaseException:
            lanes.stop()
            await settled([elsewhere])
            raise
        if not completed:
            lanes.stop()
        for part in await elsewhere:
            add(run.summary, part)
            completed = completed and not part.stopped
        if report:
            report(run.summary.orders + run.summary.skipped_unknown_merchant, run.total)
        return completed

    async def book_lane(
        self,
        terms: ledger.Terms,
        order_ids: list[str],
        now_ms: int,
        run_id: str,
        stop: _Stop | None,
        progress=None,
    ) -> Summary:
        """Book a lane of a run held by another process (attribution/lanes.py: a worker's part): these
        orders (sorted), as that run would, under its id and time. Takes no lock, moves no cursor.
        `progress(done, total)`: after each chunk, the lane's orders booked so far."""
        summary = Summary()
        run = _Run(now_ms, run_id, summary, progress, len(order_ids), stop)
        with full_collections_held():  # the lane holds its working set as a run does
            if not await self._book_orders(terms, order_ids, run):
                summary.stopped = True
        return summary

    async def _book_orders(self, terms: ledger.Terms, order_ids: list[str], run: _Run) -> bool:
        """Book these orders of one merchant (sorted), chunk by chunk. False: stopped."""
        merchant_id = terms.merchant_id
        # Read in order-id order (the events' and the ledger's sort key), not per click-time chunk: a
        # chunk's ids are spread over the whole table, so each chunk's read would scan all of it.
        events, stored = await gathered(
            self._events(merchant_id, order_ids), self._stored(merchant_id, order_ids)
        )
        folds = {o: ledger.fold(evs) for o, evs in events.items()}
        del events  # each order's list lives on in its fold, taken out as its chunk is booked
        click_ms = {o: click_time(f.created) for o, f in folds.items()}
        # Chunks in click-time order: each chunk's click lookup then reads a few days, not all of them.
        ordered = sorted(order_ids, key=lambda o: click_ms.get(o, 0))
        chunks = day_chunks(ordered, click_ms, self._chunk)
        booking = Booking(terms, folds, stored, run.now_ms, run.run_id)
        return await self._book_chunks(booking, chunks, run.summary, run.progress, run.total, run.stop)

    async def _terms(self, merchant_id: str) -> ledger.Terms | None:
        merchant = await self._merchants.get(merchant_id)
        raw_versions = await self._rates.raw_versions(merchant_id)
        if merchant is None or not raw_versions:
            return None
        raw_codes = await self._codes.raw_all(merchant_id)
        # Decoded in a thread: every rate version and code of a merchant of 20 catalog versions of 50k SKUs
        # took 150 ms, which held the event loop of the server a trace is asked of, its redirects with it.
        # In a thread, the loop waits at most for one version's decode (one C call holds the GIL).
        return await asyncio.to_thread(_decoded_terms, merchant_id, merchant, raw_versions, raw_codes)

    async def _events(self, merchant_id: str, order_ids: list[str]) -> dict[str, list[ledger.OrderEvent]]:
        """All events of the given orders (held in memory for the run: a few hundred bytes an order)."""
        events: dict[str, list[ledger.OrderEvent]] = defaultdict(list)
        for row in await asyncio.to_thread(queries.order_event_facts, self._backend, merchant_id, order_ids):
            event = event_of_facts(row)
            events[event.order_id].append(event)
        return events

    async def _book_chunks(
        self,
        booking: Booking,
        chunks: Iterator[list[str]],
        summary: Summary,
        progress,
        total: int,
        stop: _Stop | None,
    ) -> bool:
        """Book one merchant's chunks, overlapping one chunk's rules with the next chunk's reads and the
        writes of the chunks before (the ClickHouse and Redis waits were a third of a run). Each write
        keeps its own order (stage, insert, emit, unstage); writes of different chunks touch different
        orders, so up to WRITES_IN_FLIGHT overlap. False: stopped on `stop` after the chunk in hand, its
        write done."""
        chunk = next(chunks, None)
        reading = asyncio.ensure_future(self._lookup(booking, chunk)) if chunk is not None else None
        writing: deque[asyncio.Future] = deque()
        stopped = False
        try:
            while reading is not None:
                looked_up = await reading
                following = next(chunks, None)
                reading = None
                if following is not None:
                    reading = asyncio.ensure_future(self._lookup(booking, following))
                    await asyncio.sleep(0)  # the read starts (its query is sent) before the rules run
                rows = self._book(booking, chunk, looked_up, summary)
                if len(writing) >= WRITES_IN_FLIGHT:
                    await finished(writing)
                writing.append(asyncio.ensure_future(self._write(rows, booking.now_ms, summary)))
                if progress:
                    progress(summary.orders + summary.skipped_unknown_merchant, total)
                stopped = stop is not None and stop.is_set()
                if stopped:
                    break
                chunk = following
            while writing:
                await finished(writing)
            return not stopped
        finally:
            # On a failure or a cancellation, nothing of this run is left running once run_once returns:
            # the failed-run hold on the lock counts from then (a write gives up only on its own timeout).
            await settled([f for f in (reading, *writing) if f is not None])

    async def _lookup(
        self, booking: Booking, order_ids: list[str]
    ) -> tuple[dict[str, rules.ClickFacts], dict[str, review.Decision]]:
        """What a chunk's rules read besides its events and stored ledger: its clicks and review
        verdicts."""
        folds = booking.folds
        click_ids = {c.click_id for o in order_ids if (f := folds.get(o)) and (c := f.created)}
        terms = booking.terms
        facts = await self._clicks.facts(click_ids, details=terms.policy.counts_ip_clicks)
        return facts, await self._reviews.many(terms.merchant_id, order_ids)

    async def _write(self, rows: list[CommissionRow], now_ms: int, summary: Summary) -> None:
        """Stage a chunk's commission events, insert its rows, emit the events, unstage them."""
        if not rows:
            return
        announced, encoded = self._announcement(rows)
        staged = await self._outbox.stage(announced, encoded)
        insert = self._backend.insert
        await asyncio.to_thread(insert, "commissions", CommissionRow.columns(), columnar(rows))
        summary.rows += len(rows)
        # Read after the await: another chunk's write may add to the count meanwhile.
        emitted = await self._outbox.emit(announced, now_ms, encoded)
        summary.events += emitted
        await self._outbox.unstage([staged])

    @staticmethod
    def _announcement(rows: list[CommissionRow]) -> tuple[list[events_out.Event], list[bytes]]:
        """A chunk's commission events, and each encoded (pure)."""
        announced = events_out.commission_events(rows)
        return announced, [events_out.encode(e) for e in announced]

    async def _announce_staged(self, now_ms: int) -> int:
        """Emit the staged events of a run that stopped between its insert and its emission, if their
        rows are stored; drop the others (this run books those rows again and announces them). Returns
        how many staged values did not decode (dead-lettered by the outbox)."""
        staged = await self._outbox.staged()
        by_run: dict[tuple[str, str], list[events_out.Event]] = defaultdict(list)
        for event in staged.events:
            by_run[(event.data["merchant_id"], event.data["run_id"])].append(event)
        for (merchant_id, run_id), group in by_run.items():
            order_ids = sorted({e.data["order_id"] for e in group})
            booked = await asyncio.to_thread(
                queries.orders_booked_by_run, self._backend, merchant_id, order_ids, run_id
            )
            await self._outbox.emit([e for e in group if e.data["order_id"] in booked], now_ms)
        await self._outbox.unstage(staged.fields)
        return staged.dead_lettered

    async def explain(
        self, merchant_id: str, order_id: str, now_ms: int | None = None, reader: str | None = None
    ) -> trace.Explained | None:
        """The trace of one order (attribution/trace.py): what a run at `now_ms` decides for it, from the
        same functions, and what it would append. Books nothing, takes no lock. None: no such merchant or
        no event of this order, or (`reader`: the creator asking, None for the merchant or an operator) an
        order that cannot be credited to `reader`, known before the click's facts and the ledger are read
        (`_may_credit`: a creator may read only its own orders' traces, and the others' cost no more)."""
        now_ms = clock_ms() if now_ms is None else now_ms
        if await self._merchants.get(merchant_id) is None:
            return None
        events = (await self._events(merchant_id, [order_id])).get(order_id, [])
        if not events:
            return None
        folded = ledger.fold(events)
        order = folded.created
        # Before the merchant's terms: decoding every rate version and code holds the event loop (150 ms
        # for a merchant of 20 catalog versions of 50k SKUs), which a creator's refusal must not cost.
        if reader is not None and not await self._may_credit(merchant_id, folded, reader):
            return None
        terms = await self._terms(merchant_id)
        if terms is None:
            return None
        facts = await self._clicks.facts({order.click_id} if order else set(), details=True)
        click = facts.get(order.click_id) if order else None
        if click is not None:  # the trace shows the click as the ledger judges it
            click = rules.as_of(click, folded.judged_ms(terms.registered_ms), merchant_id)
        verdict = (await self._reviews.many(merchant_id, [order_id])).get(order_id)
        decision, wanted = ledger.explain(events, click, terms, now_ms, verdict)
        stored_rows = await asyncio.to_thread(queries.order_explanation, self._backend, merchant_id, order_id)
        stored = [ledger.Entry(*entry_fields_of(r)) for r in stored_rows]
        to_append = ledger.difference(wanted, ledger.net(stored))
        body = trace.render(order_id, events, click, terms, decision, verdict, wanted, stored, to_append)
        if reader is not None:
            body = trace.for_creator(body, reader)
        credit = decision.credit if decision is not None else None
        return trace.Explained(body, credit.creator_id if credit else "")

    async def _may_credit(self, merchant_id: str, folded: ledger.Folded, creator_id: str) -> bool:
        """False when the order cannot be credited to `creator_id`, whatever its click's facts and review:
        decision.decide credits the creator of the order's click or of its first code active at the terms'
        time (the same `codes.check_order_codes`), and an order not received yet (only a refund or cancel)
        nobody. Its codes' spans are one HMGET (CodeStore.of); its click is one read of that creator's clicks
        of this merchant or of none in the click's days (queries.is_creators_click), where the click facts
        scan the whole days. True does not mean credited: explain's caller checks that."""
        order = folded.created
        if order is None:
            return False
        spans = await self._codes.of(merchant_id, order.discount_codes)
        checks = codes.check_order_codes(order.discount_codes, spans, folded.terms_ms)
        chosen = codes.first_active(checks)
        if chosen is not None and chosen.span is not None and chosen.span.creator_id == creator_id:
            return True
        return await self._clicks.is_creators(merchant_id, creator_id, order.click_id)

    async def _stored(self, merchant_id: str, order_ids: list[str]) -> dict[str, ledger.Net]:
        """The stored net ledger of these orders, per order and `ledger.key` (entry id, status, creator,
        currency, click), held for the run like events."""
        stored: dict[str, ledger.Net] = defaultdict(dict)
        for row in await asyncio.to_thread(queries.ledger_for_orders, self._backend, merchant_id, order_ids):
            entry = ledger.Entry(*entry_fields_of(row))
            stored[row.order_id][ledger.key(entry)] = entry
        return stored


def _decoded_terms(
    merchant_id: str, merchant: Merchant, raw_versions: list[bytes], raw_codes: dict[bytes, bytes]
) -> ledger.Terms:
    return ledger.Terms(
        merchant_id,
        merchant.attribution_window_days,
        merchant.lock_days,
        decode_versions(raw_versions),
        merchant.currency,
        codes=codes.decode_all(raw_codes),
        policy=policy_snapshot(merchant),
        registered_ms=merchant.created_at_ms,
    )
