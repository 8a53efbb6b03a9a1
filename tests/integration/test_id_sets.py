"""Sets of string ids sent as external tables (core.clickhouse.IdSet, `ship_id_sets`) select exactly what
literal lists select: ids of every kind that needs escaping in a literal, ids absent from the table, and a
set far over the 256 KiB a literal list may take, in one query. 18.16 and the cluster ship sets; chdb
writes literals, in chunks (tests/integration/test_clickhouse_cluster.py runs the same check there)."""

from __future__ import annotations

import pytest

from core import queries
from core.clickhouse import Backend

pytestmark = [pytest.mark.clickhouse]

# Every kind of id a literal must escape or that could be mistaken for something else in SQL.
AWKWARD_IDS = [
    "",
    "it's",
    "back\\slash",
    "\\'",
    "nul\0byte",
    "new\nline",
    "tab\tand\rreturn",
    "bell\a\b\f\v",
    "é😀",
    "%(order_ids)s",
    "_ids_order_ids",
    "') OR 1 = 1 --",
    "o" * 128,
]
ABSENT_IDS = ["absent", "it''s", "back\\\\slash", "O" * 128]
# 128-character ids: about 400 KB as a literal list, which 18.16 refuses in one query.
LONG_SET = [f"{n:0128d}" for n in range(3_000)]
ORDER_ID = queries.ORDER_EVENT_FACTS.index("order_id")


class CountingBackend:
    """The real backend, counting its queries."""

    def __init__(self, real: Backend) -> None:
        self._real = real
        self.database = real.database
        self.ships_id_sets = real.ships_id_sets
        self.queries = 0

    def execute(self, sql, params=None):
        self.queries += 1
        return self._real.execute(sql, params)


def store_orders(backend: Backend, order_ids: list[str]) -> None:
    backend.insert(
        "order_events",
        ("merchant_id", "webhook_id", "event_type", "order_id"),
        [
            ["m1"] * len(order_ids),
            [f"w{n}" for n in range(len(order_ids))],
            ["created"] * len(order_ids),
            order_ids,
        ],
    )


def assert_id_sets_select_exactly(backend: Backend, after_insert=lambda: None) -> None:
    store_orders(backend, AWKWARD_IDS + LONG_SET[::2])
    after_insert()
    read = CountingBackend(backend)
    asked = sorted(AWKWARD_IDS + ABSENT_IDS)
    found = [row[ORDER_ID] for row in queries.order_event_facts(read, "m1", asked)]
    assert sorted(found) == sorted(AWKWARD_IDS)
    assert read.queries == 1
    read.queries = 0
    found = [row[ORDER_ID] for row in queries.order_event_facts(read, "m1", LONG_SET)]
    assert sorted(found) == LONG_SET[::2]
    assert read.queries == (1 if backend.ships_id_sets else len(list(queries.id_chunks(LONG_SET))))
    read.queries = 0
    assert queries.order_event_facts(read, "m1", []) == [] and read.queries == 0
    # Another merchant's id set: same ids, no rows.
    assert queries.order_event_facts(read, "m2", asked) == []


@pytest.mark.parametrize("which", ["clickhouse", pytest.param("chdb", marks=pytest.mark.chdb)])
def test_id_sets_select_exactly_what_they_name(request, which) -> None:
    from core.migrate import migrate

    backend = request.getfixturevalue("clickhouse" if which == "clickhouse" else "chdb_backend")
    migrate(backend, log=lambda _line: None)
    assert backend.ships_id_sets is (which == "clickhouse")
    assert_id_sets_select_exactly(backend)
