"""Who may read an order's trace, through HTTP on ClickHouse 18.16, and what a refusal costs: a creator
key is refused an order not credited to it with the answer it always had (403, an unknown order too),
after reading only the order's events and at most that creator's clicks of the click's day, never the
click's details, its IP's hour or the ledger (any creator could otherwise make the server do a trace's
whole ClickHouse work for any order id)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from attribution import trace
from attribution.attributor import Attributor
from attribution.clicklookup import click_span
from attribution.codes import CodeStore
from core import queries
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks
from tests.integration.test_codes_attribution import order

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp() * 1000)
URL = "/api/merchants/m1/orders/{}/trace"
# (order, creator refused, the tables its request reads): O-parked is a refund before its order (credited
# to nobody), O-unknown has no event at all (a creator is not told it apart from another's order).
REFUSED = [
    ("O-click", "bob", ["order_events", "clicks by creator"]),
    ("O-code", "alice", ["order_events"]),
    ("O-parked", "alice", ["order_events"]),
    ("O-unknown", "carol", ["order_events"]),
    ("O-both", "carol", ["order_events", "clicks by creator"]),
    # bob held the code until the day of the order; it was carol's when the order came (decision.decide
    # reads codes at the terms' time): owning it once credits nothing
    ("O-moved", "bob", ["order_events"]),
]
FORBIDDEN = {"error": {"code": "forbidden", "message": "a creator key sees only the orders credited to it"}}


class Recorded:
    """The app's ClickHouse, recording each query it runs."""

    def __init__(self, real) -> None:
        self._real = real
        self.database = real.database
        self.ships_id_sets = real.ships_id_sets
        self.queries: list[str] = []

    def execute(self, sql, params=None):
        self.queries.append(sql)
        return self._real.execute(sql, params)

    def insert(self, table, columns, data):
        return self._real.insert(table, columns, data)

    def settle_failed_inserts(self) -> None:
        self._real.settle_failed_inserts()

    def settle_unknown_parts(self) -> None:
        self._real.settle_unknown_parts()

    def close(self) -> None:
        pass  # the fixture's client, closed by the fixture

    def tables(self) -> list[str]:
        """The tables read, one per query, in order (a click read by creator is `clicks by creator`)."""
        read = []
        for sql in self.queries:
            table = re.search(rf"FROM {self.database}\.(\w+)", sql).group(1)
            read.append(f"{table} by creator" if "creator_id = %(creator_id)s" in sql else table)
        return read


def test_a_forbidden_creator_is_refused_before_the_traces_reads(settings, clickhouse, monkeypatch) -> None:
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, default_bps=1000)
        await CodeStore(r, keys).put("m1", "BOB10", "bob", None, T0)
        await CodeStore(r, keys).put("m1", "MOVE10", "bob", None, T0 - DAY)
        await CodeStore(r, keys).put("m1", "MOVE10", "carol", None, T0)
        click = ids.new(T0)
        insert_clicks(clickhouse, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
        await order(r, keys, "w1", "O-click", T0 + MINUTE, click)  # alice's click
        await order(r, keys, "w2", "O-code", T0 + MINUTE, codes=["bob10"])  # bob's code, no click
        await order(r, keys, "w3", "O-both", T0 + MINUTE, click, codes=["BOB10"])  # the click wins: alice
        await order(r, keys, "w5", "O-moved", T0 + MINUTE, codes=["move10"])  # carol's code by then
        shoes = [("SKU-1", "shoes", 5990, 2)]
        assert await deliver(r, keys, "m1", "w4", "order.refunded", "O-parked", click, T0, shoes) == 0
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, clickhouse)
        await Attributor(r, keys, clickhouse, ids).run_once(now_ms=T0 + HOUR)
        await r.aclose()
        async with running_app(settings) as (app, client):
            bearer = {}
            for creator in ("alice", "bob", "carol"):
                issued = await client.post("/api/keys", json={"creator_id": creator}, headers=ADMIN)
                bearer[creator] = {"authorization": f"Bearer {issued.json()['key']}"}
            recorded = Recorded(clickhouse)
            app.ctx._clickhouse = recorded
            # The merchant's terms (every rate version and code, decoded on the event loop) are read only
            # once the caller may see the trace.
            terms_read: list[str] = []
            real_terms = Attributor._terms

            async def counted_terms(self, merchant_id):
                terms_read.append(merchant_id)
                return await real_terms(self, merchant_id)

            monkeypatch.setattr(Attributor, "_terms", counted_terms)

            async def traced(order_id: str, headers: dict) -> tuple[int, dict, list[str]]:
                recorded.queries.clear()
                response = await client.get(URL.format(order_id), headers=headers)
                return response.status_code, response.json(), recorded.tables()

            # refused: the answer of old, after the events and at most the creator's own clicks
            for order_id, creator, reads in REFUSED:
                assert await traced(order_id, bearer[creator]) == (403, FORBIDDEN, reads), order_id
            assert terms_read == []
            # owning the order's code is not being credited: bob is refused after the whole decision
            status, body, _ = await traced("O-both", bearer["bob"])
            assert (status, body) == (403, FORBIDDEN)
            # the credited creator reads what the merchant reads, but another creator's terms
            credited = (("O-click", "alice"), ("O-code", "bob"), ("O-both", "alice"), ("O-moved", "carol"))
            for order_id, creator in credited:
                status, body, read = await traced(order_id, bearer[creator])
                assert status == 200 and "commissions" in read
                full = (await client.get(URL.format(order_id), headers=ADMIN)).json()
                assert body == (full if order_id != "O-both" else trace.for_creator(full, creator))
            # O-both: alice's click won over bob's code; she reads that the code was there, not bob's rate
            [bobs] = (await client.get(URL.format("O-both"), headers=ADMIN)).json()["codes"]
            [as_alice] = (await client.get(URL.format("O-both"), headers=bearer["alice"])).json()["codes"]
            assert (bobs["creator_id"], bobs["status"]) == ("bob", "active")
            assert as_alice == bobs | dict.fromkeys(
                ("creator_id", "rate_bps", "active_from_ms", "active_to_ms")
            )
            assert (await client.get(URL.format("O-unknown"), headers=ADMIN)).status_code == 404

    asyncio.run(scenario())


def test_a_creators_click_counts_only_for_its_merchant_or_none(settings, clickhouse) -> None:
    """rules.ineligibility: a click recorded for another merchant never earns this one's order; one
    recorded before its host had an owner ('') may. The early check asks no more than that."""
    migrate(clickhouse, log=lambda *_: None)
    ids = ClickIds(settings.secret_bytes)
    for_m1, for_none = ids.new(T0), ids.new(T0 + 1)
    insert_clicks(
        clickhouse,
        [
            (for_m1, T0, "bob", "m1", "shop.m1.example", 0, 0),
            (for_none, T0 + 1, "bob", "", "x.example", 0, 0),
        ],
    )
    for click, ts, merchant, creator, expected in [
        (for_m1, T0, "m1", "bob", True),
        (for_m1, T0, "m2", "bob", False),
        (for_m1, T0, "m1", "alice", False),
        (for_none, T0 + 1, "m2", "bob", True),
    ]:
        span = click_span({click: ts})
        assert queries.is_creators_click(clickhouse, merchant, creator, *span) is expected, (
            merchant,
            creator,
        )


def test_a_trace_shows_neither_another_creators_click_and_terms_nor_another_merchants_click(
    settings, clickhouse
) -> None:
    """Found by an authorization sweep: alice, credited by her code over bob's click (the merchant puts
    codes first), read bob's click (his link, its time); credited with bob's code also on the order, she
    read bob's negotiated rate, which a creator key is refused everywhere else; and a merchant sending an
    order with a click on another merchant's link read who made that click, through which link, when."""
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)
    details = ("ts", "code", "creator_id", "is_bot")

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY, attribution_priority="code")
        await add_merchant(r, keys, "m2", ["shop.m2.example"], T0 - DAY)
        await CodeStore(r, keys).put("m1", "ALICE10", "alice", None, T0)
        await CodeStore(r, keys).put("m1", "BOB77", "bob", 777, T0)
        bobs, on_m2 = ids.new(T0), ids.new(T0 + 1)
        insert_clicks(
            clickhouse,
            [
                (bobs, T0, "bob", "m1", "shop.m1.example", 0, 0),
                (on_m2, T0 + 1, "bob", "m2", "shop.m2.example", 0, 0),
            ],
        )
        await order(r, keys, "w1", "O-prio", T0 + MINUTE, bobs, codes=["ALICE10"])
        await order(r, keys, "w2", "O-codes", T0 + MINUTE, codes=["ALICE10", "BOB77"])
        await order(r, keys, "w3", "O-foreign", T0 + MINUTE, on_m2)
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, clickhouse)
        await Attributor(r, keys, clickhouse, ids).run_once(now_ms=T0 + HOUR)
        await r.aclose()
        async with running_app(settings) as (_, client):
            issued = await client.post("/api/keys", json={"creator_id": "alice"}, headers=ADMIN)
            alice = {"authorization": f"Bearer {issued.json()['key']}"}

            async def read(order_id: str, headers: dict) -> dict:
                response = await client.get(URL.format(order_id), headers=headers)
                assert response.status_code == 200, response.text
                return response.json()

            full, mine = await read("O-prio", ADMIN), await read("O-prio", alice)
            assert full["outcome"] == mine["outcome"] == "credited"
            assert full["click"]["creator_id"] == "bob" and full["click"]["ts"]
            assert mine["click"] == full["click"] | dict.fromkeys(details)
            full, mine = await read("O-codes", ADMIN), await read("O-codes", alice)
            assert [(c["code"], c["creator_id"], c["rate_bps"]) for c in full["codes"]] == [
                ("ALICE10", "alice", None),
                ("BOB77", "bob", 777),
            ]
            assert [(c["code"], c["creator_id"], c["rate_bps"], c["status"]) for c in mine["codes"]] == [
                ("ALICE10", "alice", None, "active"),
                ("BOB77", None, None, "active"),
            ]
            foreign = await read("O-foreign", ADMIN)
            assert foreign["outcome"] == "foreign_merchant"
            assert (foreign["click"]["found"], foreign["click"]["owner_ok"]) == (True, False)
            assert [foreign["click"][name] for name in details] == [None] * 4

    asyncio.run(scenario())
