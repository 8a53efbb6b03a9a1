"""The column-type reading behind the ingest rows' integer checks (tests/chtypes.py): each spelling of
18.16 and of a current ClickHouse, wrapped or not, and a loud refusal of an integer type it cannot read."""

from __future__ import annotations

import pytest

from tests.chtypes import IntegerColumn, UnreadableType, integer_column, unchecked_integer_columns

U32 = (0, 2**32)
I64 = (-(2**63), 2**63)

# (type as system.columns spells it, (low, high, array depth, nullable) or None: no integer)
READ = [
    ("UInt8", (0, 256, 0, False)),
    ("Int8", (-128, 128, 0, False)),
    ("Int16", (-(2**15), 2**15, 0, False)),
    ("UInt32", (*U32, 0, False)),
    ("Int64", (*I64, 0, False)),
    ("UInt64", (0, 2**64, 0, False)),
    ("Bool", (0, 2, 0, False)),
    ("DateTime", (*U32, 0, False)),
    ("DateTime('UTC')", (*U32, 0, False)),
    ("DateTime('America/Argentina/Buenos_Aires')", (*U32, 0, False)),
    ("Nullable(UInt32)", (*U32, 0, True)),
    ("Nullable(DateTime)", (*U32, 0, True)),
    ("LowCardinality(UInt32)", (*U32, 0, False)),
    ("LowCardinality(Nullable(Int64))", (*I64, 0, True)),
    ("Array(UInt32)", (*U32, 1, False)),
    ("Array(Nullable(UInt32))", (*U32, 1, True)),
    ("Array(Array(Int64))", (*I64, 2, False)),
    ("Array(LowCardinality(Nullable(UInt32)))", (*U32, 1, True)),
    ("String", None),
    ("Nullable(String)", None),
    ("LowCardinality(String)", None),
    ("LowCardinality(Nullable(String))", None),
    ("Array(String)", None),
    ("FixedString(16)", None),
    ("Float64", None),
    ("Date", None),
    ("Date32", None),
    ("UUID", None),
    ("Decimal(18, 2)", None),
    ("Enum8('a' = 1, 'b' = 2)", None),
    ("Enum8('UInt8' = 1, 'DateTime' = 2)", None),  # names are not types
]
UNREADABLE = [
    "Int128",
    "UInt256",
    "Nullable(Int128)",
    "DateTime64(3)",
    "DateTime64(3, 'UTC')",
    "Array(DateTime64(3))",
    "LowCardinality(Nullable(UInt128))",
    "Tuple(UInt8, String)",
    "Map(String, UInt64)",
    "AggregateFunction(sum, UInt64)",
    "SimpleAggregateFunction(max, Int64)",
    "Nested(a UInt32)",
    "IntervalSecond",
    "Wrapped(UInt32)",  # a wrapper this reading does not know
    # Current ClickHouse's types that can hold integers: refused, not read as "no integer".
    "Time",
    "Time64(3)",
    "Nullable(Time)",
    "Dynamic",
    "JSON",
    "Object('json')",
]


@pytest.mark.parametrize(("column_type", "expected"), READ)
def test_each_spelling_reads_as_its_integers(column_type: str, expected) -> None:
    assert integer_column(column_type) == (IntegerColumn(*expected) if expected else None)


@pytest.mark.parametrize("column_type", UNREADABLE)
def test_an_integer_type_it_cannot_read_raises(column_type: str) -> None:
    with pytest.raises(UnreadableType, match="an integer type this check does not read"):
        integer_column(column_type)


def test_a_columns_integers_flatten_its_arrays_and_leave_out_nulls() -> None:
    assert integer_column("Nullable(UInt32)").values([1, None, 3]) == [1, 3]
    assert integer_column("Array(Nullable(Int64))").values([[1, None], [], [-2]]) == [1, -2]
    assert integer_column("Array(Array(UInt8))").values([[[1], [2, 3]], [[]]]) == [1, 2, 3]


def test_the_guard_names_an_unchecked_nullable_integer_column() -> None:
    """A table gaining a Nullable (or LowCardinality, or Array) integer column fails its stream's check
    until the check covers it: such a column was once skipped as no integer at all."""
    table = {
        "order_id": "String",
        "quantity": "UInt32",
        "tax_minor": "Nullable(Int64)",
        "channel": "LowCardinality(String)",
        "rank": "LowCardinality(Nullable(UInt8))",
        "codes": "Array(String)",
        "scores": "Array(Nullable(UInt16))",
    }
    assert unchecked_integer_columns(table, {"quantity"}) == {"tax_minor", "rank", "scores"}
    assert unchecked_integer_columns(table, {"quantity", "tax_minor", "rank", "scores"}) == set()
    with pytest.raises(UnreadableType):
        unchecked_integer_columns({**table, "at": "DateTime64(3)"}, set(table))
