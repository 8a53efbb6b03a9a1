"""The integers a ClickHouse column holds, read from its type as `system.columns` spells it, on 18.16 and on
a current ClickHouse (chdb): the checks that every integer a stream decoder admits fits its column
(tests/integration/test_ingest_rows.py) read the migrated tables' types through here.

Wrappers are taken off (`Nullable`, `LowCardinality`, `Array`, any nesting), so a nullable integer column is
checked like a plain one; a type that may hold integers but is not read here (`Int128`, `DateTime64(3)`,
`Tuple(UInt8, String)`, an aggregate function's state, a wrapper not listed) raises rather than leaving its
column unchecked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# [low, high) of each integer type.
RANGES = {
    f"{sign}Int{bits}": ((-(2 ** (bits - 1)), 2 ** (bits - 1)) if sign == "" else (0, 2**bits))
    for sign in ("", "U")
    for bits in (8, 16, 32, 64)
} | {"Bool": (0, 2)}
# DateTime, with or without its time zone: seconds since the epoch in a UInt32.
DATETIME = re.compile(r"DateTime(\('[^']*'\))?")
# Wrappers whose values are the wrapped type's (Nullable adds None); Array counts a level of lists.
WRAPPER = re.compile(r"(Nullable|LowCardinality|Array)\((.*)\)")
# A type naming an integer anywhere (outside quotes) that the above did not read.
INTEGER_ISH = re.compile(r"Int\d+|DateTime|Time|Bool|Interval|Dynamic|JSON|Object")
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")


class UnreadableType(ValueError):
    """A column type that may hold integers, in a spelling `integer_column` does not read."""


@dataclass(frozen=True, slots=True)
class IntegerColumn:
    low: int  # inclusive
    high: int  # exclusive
    depth: int = 0  # Array levels around the integer
    nullable: bool = False

    def values(self, column: Iterable) -> list[int]:
        """A built column's integers, its arrays flattened and its NULLs left out."""
        values = list(column)
        for _ in range(self.depth):
            values = [v for row in values for v in row]
        return [int(v) for v in values if v is not None]


def integer_column(column_type: str) -> IntegerColumn | None:
    """The integers a column of this type holds; None for a type holding no integer (String, Float64,
    Date, FixedString(16), Enum8(...), ...), UnreadableType for one that may but is not read here."""
    inner, depth, nullable = column_type.strip(), 0, False
    while (wrapped := WRAPPER.fullmatch(inner)) is not None:
        wrapper, inner = wrapped.groups()
        inner = inner.strip()
        depth += wrapper == "Array"
        nullable |= wrapper == "Nullable"
    if inner in RANGES:
        return IntegerColumn(*RANGES[inner], depth, nullable)
    if DATETIME.fullmatch(inner):
        return IntegerColumn(0, 2**32, depth, nullable)
    if inner.startswith(("Enum8(", "Enum16(")):
        return None  # its values are names
    if INTEGER_ISH.search(QUOTED.sub("''", inner)):
        raise UnreadableType(f"{column_type!r}: an integer type this check does not read")
    return None


def unchecked_integer_columns(types: dict[str, str], checked: Iterable[str]) -> set[str]:
    """The integer columns of a table (name -> type) that are not among `checked`: the check of a stream's
    table must leave none (a column added to the table is checked, or this names it)."""
    return {name for name, kind in types.items() if integer_column(kind) is not None} - set(checked)
