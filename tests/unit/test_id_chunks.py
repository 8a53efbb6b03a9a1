"""core.queries.id_chunks: IN lists cut by the size of their SQL text, never by count alone (18.16 refuses
a query over 256 KiB; order ids may be 128 characters)."""

from __future__ import annotations

import pytest
from clickhouse_driver.util.escape import escape_params
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clickhouse import IdSet
from core.queries import IN_LIST_BYTES, id_chunks


def quoted_bytes(ids) -> int:
    """The bytes of the IN list the driver writes for these ids, escapes included."""
    escaped = (i.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") for i in ids)
    return sum(len(e.encode()) + 4 for e in escaped)


@pytest.mark.parametrize(
    ("ids", "max_bytes", "sizes"),
    [
        ([], 100, []),
        (["a"], 100, [1]),
        (["a"] * 20, 100, [20]),  # 5 bytes each: exactly 100
        (["a"] * 21, 100, [20, 1]),
        (["x" * 200], 100, [1]),  # one id longer than the budget still goes, alone
        (["x" * 200, "y"], 100, [1, 1]),
        (["ab'c"] * 3, 20, [1, 1, 1]),  # escaped: counted as twice its bytes
        (["é" * 3] * 4, 20, [2, 2]),  # UTF-8 bytes, not characters
        (["o" * 128] * 2_000, IN_LIST_BYTES, [1_515, 485]),  # 132 bytes each
        ([f"O-{n}" for n in range(100_000)], IN_LIST_BYTES, None),
    ],
)
def test_id_chunks(ids, max_bytes, sizes) -> None:
    chunks = [list(c) for c in id_chunks(ids, max_bytes)]
    assert [i for c in chunks for i in c] == ids  # every id once, in order
    if sizes is not None:
        assert [len(c) for c in chunks] == sizes
    for chunk in chunks:
        assert len(chunk) == 1 or quoted_bytes(chunk) <= max_bytes
    if ids and sizes is None:
        assert len(chunks) <= 10  # short ids go many thousands at once


# --- IdSet: the IN list literal written by str.translate is the driver's, byte for byte -------------------
@settings(max_examples=500, deadline=None)
@given(ids=st.lists(st.text(alphabet=st.sampled_from("ab%'\\\"\b\f\r\n\t\0\a\v\x01é😀 ()"), max_size=12)))
def test_an_id_set_as_text_is_the_literal_the_driver_writes(ids) -> None:
    from clickhouse_driver.util.escape import escape_param

    assert str(IdSet(ids)) == escape_param(tuple(ids), None)
    # and it goes through the driver's parameter escaping untouched (both backends format with it)
    escaped = escape_params({"ids": IdSet(ids)}, None)
    expected = "SELECT " + escape_param(tuple(ids), None)
    assert "SELECT %(ids)s" % escaped == expected  # noqa: UP031 - how both backends substitute parameters


# --- ship_id_sets: which parameters become external tables, under which names ----------------------------
def shipped_type(params, table_name: str) -> str:
    return params[table_name.removeprefix("_ids_")].column_type


@pytest.mark.parametrize(
    ("params", "literal", "tables"),
    [
        (None, None, {}),
        ({}, {}, {}),
        ({"m": "m1", "n": 3}, {"m": "'m1'", "n": "3"}, {}),
        ({"o": IdSet(["a", "b'"])}, {"o": "_ids_o"}, {"_ids_o": ["a", "b'"]}),
        ({"o": IdSet([])}, {"o": "()"}, {}),  # an empty table would end the external data: a literal
        ({"h": IdSet([7, 2**64 - 1], "UInt64")}, {"h": "_ids_h"}, {"_ids_h": [7, 2**64 - 1]}),
        (
            {"m": "m1", "o": IdSet(("x",)), "c": IdSet(iter(["y", "z"]))},
            {"m": "'m1'", "o": "_ids_o", "c": "_ids_c"},
            {"_ids_o": ["x"], "_ids_c": ["y", "z"]},
        ),
    ],
)
def test_ship_id_sets(params, literal, tables) -> None:
    from core.clickhouse import ship_id_sets

    before = dict(params) if params else params
    shipped, external = ship_id_sets(params)
    assert params == before  # the caller's dict is left as it was
    if literal is None:
        assert shipped is None and external is None
        return
    # What the query text gets, through the driver's substitution (table names go in unquoted).
    assert {k: str(v) for k, v in escape_params(shipped, None).items()} == literal
    assert {t["name"]: [row[0] for row in t["data"]] for t in external or []} == tables
    for table in external or []:
        assert table["structure"] == [("id", shipped_type(params, table["name"]))]
    assert (external is None) == (not tables)


@pytest.mark.parametrize(
    ("ids", "literal"),
    [([], "()"), ([0], "(0)"), ([1, 2**64 - 1], "(1, 18446744073709551615)"), ((True, 5), "(1, 5)")],
)
def test_an_integer_id_set_as_text(ids, literal) -> None:
    assert str(IdSet(ids, "UInt64")) == literal


def test_an_id_set_of_another_type_or_under_an_odd_name_is_refused() -> None:
    from core.clickhouse import ship_id_sets

    with pytest.raises(ValueError, match="String or UInt64"):
        IdSet(["a"], "Array(String)")
    with pytest.raises(ValueError, match="plain name"):
        ship_id_sets({"ids) OR (1": IdSet(["a"])})
