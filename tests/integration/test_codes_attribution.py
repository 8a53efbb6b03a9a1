"""Codes and review below HTTP, on ClickHouse 18.16 and on a current ClickHouse (chdb): a code reassigned
credits each order by its own time, the IP-per-hour rule counts human clicks of the creator's links in
the click's hour, and the queries behind the review endpoint and the trace."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from attribution.attributor import Attributor
from attribution.codes import CodeStore
from attribution.policy import ReviewRules
from attribution.review import ReviewStore
from attribution.webhooks import Acceptor
from core import queries
from core.clickid import ClickIds
from core.keys import Keys
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks, iso

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp() * 1000)
SHOES = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 2}]


async def order(r, keys, webhook_id, order_id, at_ms, click_id="", codes=()):
    body = orjson.dumps(
        {
            "type": "order.created",
            "data": {
                "order_id": order_id,
                "click_id": click_id,
                "currency": "EUR",
                "occurred_at": iso(at_ms),
                "items": SHOES,
                "discount_codes": list(codes),
            },
        }
    )
    assert await Acceptor(r, keys).accept("m1", webhook_id, body, at_ms) == 0


def net(backend) -> dict[str, tuple]:
    rows = backend.execute(
        "SELECT order_id, sum(amount_minor), any(creator_id), any(status), any(attributed_by), any(code), "
        f"anyIf(reason, kind = 'accrual') FROM {backend.database}.commissions GROUP BY order_id"
    )
    return {r[0]: (int(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows}


def test_reassigned_code_and_ip_rule(settings, backend) -> None:
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        review = ReviewRules(max_clicks_per_ip_hour=2)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, review=review)
        store = CodeStore(r, keys)
        await store.put("m1", "SPRING", "alice", None, T0)
        await store.put("m1", "spring", "bob", 250, T0 + HOUR)  # reassigned: bob, 2.5 %
        await store.delete("m1", "SPRING", T0 + 2 * HOUR)
        c = {n: ids.new(T0 + i * MINUTE) for i, n in enumerate(["a1", "a2", "a3", "abot", "b1"])}
        insert_clicks(
            backend,
            [
                # alice: three human clicks and a bot in one hour, all from one IP hash (0)
                (c["a1"], T0, "alice", "m1", "shop.m1.example", 0, 0),
                (c["a2"], T0 + MINUTE, "alice", "m1", "shop.m1.example", 0, 0),
                (c["a3"], T0 + 2 * MINUTE, "alice", "m1", "shop.m1.example", 0, 0),
                (c["abot"], T0 + 3 * MINUTE, "alice", "m1", "shop.m1.example", 0, 1),
                (c["b1"], T0 + 4 * MINUTE, "bob", "m1", "shop.m1.example", 0, 0),
            ],
        )
        await order(r, keys, "w1", "O-alice-code", T0 + 30 * MINUTE, codes=["spring"])
        await order(r, keys, "w2", "O-bob-code", T0 + 90 * MINUTE, codes=["Spring"])
        await order(r, keys, "w3", "O-gone", T0 + 3 * HOUR, codes=["SPRING"])
        await order(r, keys, "w4", "O-farm", T0 + 4 * HOUR, c["a1"])  # 3 human clicks > 2: review
        await order(r, keys, "w5", "O-bob", T0 + 4 * HOUR, c["b1"])  # 1 click: fine
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        summary = await attributor.run_once(now_ms=T0 + 5 * HOUR)
        assert summary.outcomes == {"credited": 4, "no_active_code": 1}
        # 11,980 × 10 % = 1198; × 2.5 % = 299.5 → 300 (half-even: 299 is odd)
        assert net(backend) == {
            "O-alice-code": (1198, "alice", "pending", "code", "SPRING", ""),
            "O-bob-code": (300, "bob", "pending", "code", "spring", ""),
            "O-gone": (0, "", "pending", "", "", ""),
            "O-farm": (1198, "alice", "review", "click", "", "max_clicks_per_ip_hour"),
            "O-bob": (1198, "bob", "pending", "click", "", ""),
        }
        assert queries.review_state(backend, "m1", "O-farm") == (1, 1198)
        assert queries.review_state(backend, "m1", "O-bob") == (0, 0)
        explained = await attributor.explain("m1", "O-farm", now_ms=T0 + 5 * HOUR)
        assert explained.credited_creator == "alice"
        trace = explained.trace
        assert trace["review"] == [
            {"rule": "max_clicks_per_ip_hour", "limit": 2, "observed": 3, "tripped": True}
        ]
        assert trace["click"]["code"] == "codealice" and trace["ledger"][0]["booked"]
        # the lock never approves a held accrual; a rejection reverses it on the next run
        await attributor.run_once(now_ms=T0 + 40 * DAY)
        assert net(backend)["O-farm"][2] == "review"
        await ReviewStore(r, keys).decide("m1", "O-farm", "reject", T0 + 41 * DAY)
        await attributor.run_once(now_ms=T0 + 41 * DAY)
        assert net(backend)["O-farm"][0] == 0
        await r.aclose()

    asyncio.run(scenario())


def by_status(backend, order_id: str) -> dict[str, int]:
    rows = backend.execute(
        f"SELECT status, sum(amount_minor) FROM {backend.database}.commissions "
        "WHERE order_id = %(o)s GROUP BY status",
        {"o": order_id},
    )
    return {status: int(amount) for status, amount in rows if amount}


def test_a_refund_booked_in_review_moves_to_pending_when_an_earlier_approval_is_known(settings, backend):
    """The stored ledger is compared per (entry id, status): the refund's row keeps its id but not its
    status, so the run that learns of the approval moves it out of `review`."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        review = ReviewRules(min_click_to_order_s=3600)  # an order within the hour of its click is held
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, review=review)
        click = ids.new(T0)
        insert_clicks(backend, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
        shoes = [("SKU-1", "shoes", 5990, 2)]
        assert await deliver(r, keys, "m1", "w1", "order.created", "O-1", click, T0 + 10 * MINUTE, shoes) == 0
        refund = [("SKU-1", "shoes", 5990, 1)]
        assert await deliver(r, keys, "m1", "w2", "order.refunded", "O-1", click, T0 + 2 * HOUR, refund) == 0
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + 3 * HOUR)
        assert by_status(backend, "O-1") == {"review": 1198 - 599}  # held, refund included
        # decided before the refund happened (a run that read the decisions before it was written)
        await ReviewStore(r, keys).decide("m1", "O-1", "approve", T0 + HOUR)
        await attributor.run_once(now_ms=T0 + 4 * HOUR)
        assert by_status(backend, "O-1") == {"pending": 1198 - 599}
        # what the next run compares against: the refund's net in each status it was booked in
        refund_rows = [r for r in queries.ledger_for_orders(backend, "m1", ["O-1"]) if ":rev:" in r.entry_id]
        assert sorted((r.entry_id, r.status, r.amount_minor) for r in refund_rows) == [
            ("review:rev:w2:0", "pending", -599),
            ("review:rev:w2:0", "review", 0),
        ]
        assert (await attributor.run_once(now_ms=T0 + 5 * HOUR)).rows == 0
        await r.aclose()

    asyncio.run(scenario())


def test_a_code_reassigned_after_a_future_dated_order_was_booked_moves_nothing(settings, backend) -> None:
    """An order received dated two hours ahead (stored by a release before the webhook refused such
    dates), booked, then its code reassigned before the order's own time: the rerun appends nothing,
    through the stored events' receipt times (queries.ORDER_EVENT_FACTS → ledger.Folded.terms_ms)."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000)
        store = CodeStore(r, keys)
        await store.put("m1", "SPRING", "alice", None, T0)
        received, occurred = T0 + HOUR, T0 + 3 * HOUR
        body = orjson.dumps(
            {
                "type": "order.created",
                "data": {"order_id": "O-ahead", "currency": "EUR", "occurred_at": iso(occurred),
                         "items": SHOES, "discount_codes": ["spring"]},
            }
        )  # fmt: skip
        assert await Acceptor(r, keys).accept("m1", "w-ahead", body, received) == 0
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=received + MINUTE)
        booked = net(backend)
        assert booked["O-ahead"] == (1198, "alice", "pending", "code", "SPRING", "")
        rows = backend.execute(f"SELECT count() FROM {backend.database}.commissions")[0][0]
        await store.put("m1", "SPRING", "bob", 2500, T0 + 2 * HOUR)  # before the order's own time
        await r.delete(keys.attribution_cursor)  # the rerun reads the order again
        summary = await attributor.run_once(now_ms=occurred + HOUR)
        assert summary.rows == 0 and net(backend) == booked
        assert backend.execute(f"SELECT count() FROM {backend.database}.commissions")[0][0] == rows
        await r.aclose()

    asyncio.run(scenario())


def test_a_trace_reader_not_credited_is_refused_alike_on_both(settings, backend) -> None:
    """Attributor.explain's `reader` (the creator key's check behind the trace API), on 18.16 and a
    current ClickHouse: the credited creator gets the trace the merchant gets; the creator of another
    click, or of no click or code of the order, gets None (the HTTP test, test_trace_access.py, counts
    the reads a refusal costs). A click just before midnight is found by the creator's read too."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000)
        midnight = T0 - 10 * HOUR + DAY
        late, other = ids.new(midnight - 1), ids.new(T0)
        insert_clicks(
            backend,
            [
                (late, midnight - 1, "alice", "m1", "shop.m1.example", 0, 0),
                (other, T0, "bob", "m1", "shop.m1.example", 0, 0),
            ],
        )
        await order(r, keys, "w1", "O-late", midnight + MINUTE, late)
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        merchants = await attributor.explain("m1", "O-late", now_ms=midnight + HOUR)
        assert merchants.credited_creator == "alice"
        alices = await attributor.explain("m1", "O-late", now_ms=midnight + HOUR, reader="alice")
        assert alices == merchants
        for reader in ("bob", "carol", ""):
            assert await attributor.explain("m1", "O-late", now_ms=midnight + HOUR, reader=reader) is None
        assert await attributor.explain("m1", "O-none", reader="alice") is None
        await r.aclose()

    asyncio.run(scenario())


def test_the_ip_rule_counts_this_merchants_clicks_only(settings, backend) -> None:
    """The last session's review found the rule counting a creator's clicks on every merchant's links, and
    the trace showing that count to the merchant. Now: clicks recorded for this merchant, or for nobody on
    a host it owns; a creator's clicks for another merchant, or for nobody on its host, are not counted."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        review = ReviewRules(max_clicks_per_ip_hour=3)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000, review=review)
        await add_merchant(r, keys, "m2", ["shop.m2.example"], T0 - DAY, default_bps=1000, review=review)
        c = [ids.new(T0 + i * MINUTE) for i in range(8)]
        # alice, one IP hash (0), one hour: 3 clicks count for m1 (two recorded for it, one for nobody on
        # its host), 5 for m2 (three recorded for it, two for nobody on its host)
        insert_clicks(
            backend,
            [
                (c[0], T0, "alice", "m1", "shop.m1.example", 0, 0),
                (c[1], T0 + MINUTE, "alice", "m1", "shop.m1.example", 0, 0),
                (c[2], T0 + 2 * MINUTE, "alice", "", "shop.m1.example", 0, 0),
                *[(c[i], T0 + i * MINUTE, "alice", "m2", "shop.m2.example", 0, 0) for i in (3, 4, 5)],
                *[(c[i], T0 + i * MINUTE, "alice", "", "shop.m2.example", 0, 0) for i in (6, 7)],
            ],
        )
        await order(r, keys, "w1", "O-m1", T0 + HOUR, c[0])
        await order(r, keys, "w2", "O-m1-unowned-link", T0 + HOUR, c[2])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + 2 * HOUR)
        assert {o: v[2:] for o, v in net(backend).items()} == {
            "O-m1": ("pending", "click", "", ""),
            "O-m1-unowned-link": ("pending", "click", "", ""),
        }
        for order_id in ("O-m1", "O-m1-unowned-link"):
            trace = (await attributor.explain("m1", order_id, now_ms=T0 + 2 * HOUR)).trace
            assert trace["review"] == [
                {"rule": "max_clicks_per_ip_hour", "limit": 3, "observed": 3, "tripped": False}
            ]
        facts = await attributor._clicks.facts({c[3], c[6]}, details=True)
        assert facts[c[3]].ip_hour_clicks == facts[c[6]].ip_hour_clicks == 5  # m2's own count
        await r.aclose()

    asyncio.run(scenario())


def test_after_a_domain_moved_the_ip_rule_counts_for_the_owner_when_the_order_came(settings, backend) -> None:
    """helper-73: after an admin moved the domains, a rerun of an earlier order counted its click's hour
    for the new owner (5 clicks: held for review), while the click itself was judged the old owner's (1)."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        c = [ids.new(T0 + i * MINUTE) for i in range(5)]
        insert_clicks(  # recorded for nobody: one on m1's host to be, four on a host nobody has yet
            backend,
            [(c[0], T0, "alice", "", "shop.m1.example", 0, 0)]
            + [(c[i], T0 + i * MINUTE, "alice", "", "other.example", 0, 0) for i in range(1, 5)],
        )
        review = ReviewRules(max_clicks_per_ip_hour=3)
        await add_merchant(
            r, keys, "m1", ["shop.m1.example"], T0 + 30 * MINUTE, default_bps=1000, review=review
        )
        await order(r, keys, "w1", "O-1", T0 + HOUR, c[0])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)
        await attributor.run_once(now_ms=T0 + HOUR + 1)
        await add_merchant(
            r, keys, "m3", ["shop.m1.example", "other.example"], T0 + 2 * HOUR, transfer_domains=True
        )
        refund = [{"sku": "SKU-1", "category": "shoes", "unit_price_minor": 5990, "quantity": 1}]
        body = orjson.dumps(
            {
                "type": "order.refunded",
                "data": {"order_id": "O-1", "click_id": c[0], "currency": "EUR", "items": refund}
                | {"occurred_at": iso(T0 + 3 * HOUR)},
            }
        )
        assert await Acceptor(r, keys).accept("m1", "w2", body, T0 + 3 * HOUR) == 0
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        await attributor.run_once(now_ms=T0 + 3 * HOUR + 1)
        assert net(backend)["O-1"][:2] == (599, "alice")
        assert queries.review_state(backend, "m1", "O-1") == (0, 0)  # nothing held for review
        trace = (await attributor.explain("m1", "O-1", now_ms=T0 + 4 * HOUR)).trace
        assert trace["review"] == [
            {"rule": "max_clicks_per_ip_hour", "limit": 3, "observed": 1, "tripped": False}
        ]
        await r.aclose()

    asyncio.run(scenario())


def test_the_ip_rule_groups_hosts_that_changed_hands_alike(settings, backend) -> None:
    """helper-74: each host of a click's hour was a group that rules.as_of walked for every order (5,000
    hosts: 2 ms an order). Clicks recorded for nobody on hosts of the same timeline are one group."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(
            r, keys, "m1", ["shop.m1.example"], T0 - DAY, review=ReviewRules(max_clicks_per_ip_hour=3)
        )
        c = [ids.new(T0 + i * 1000) for i in range(51)]
        insert_clicks(
            backend,
            [(c[0], T0, "alice", "m1", "shop.m1.example", 0, 0)]
            + [(c[i], T0 + i * 1000, "alice", "", f"host{i}.example", 0, 0) for i in range(1, 51)],
        )
        facts = await Attributor(r, keys, backend, ids)._clicks.facts({c[0]}, details=True)
        await r.aclose()
        groups = sorted(facts[c[0]].ip_hour_groups)
        assert groups == [("", ((0, ""),), 50), ("m1", (), 1)]
        assert facts[c[0]].ip_hour_clicks == 1

    asyncio.run(scenario())
