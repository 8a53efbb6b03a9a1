"""The ingester's bounded memo (redirector/ingest/memo.py): the function's value for every item, in order,
each distinct value computed once while it fits, never more than `limit` values held."""

from __future__ import annotations

import pytest

from redirector.ingest.memo import Memo


@pytest.mark.parametrize(
    ("values", "limit", "calls", "held"),
    [
        ([], 4, 0, 0),
        (["a", "b", "a", "a", "b"], 4, 2, 2),
        (["a", "b", "c", "d"], 4, 4, 4),
        (["a", "b", "c", "d", "e"], 4, 5, 1),  # full at "e": emptied, then "e" alone
        (["a", "b", "c", "a", "b", "c"], 2, 6, 2),  # emptied at "c" and at the second "b"
        (["é", "é", "ü"], 1, 2, 1),
    ],
)
def test_column_values_calls_and_bound(values: list[str], limit: int, calls: int, held: int) -> None:
    seen: list[str] = []

    def encode(text: str) -> bytes:
        seen.append(text)
        return text.encode()

    memo = Memo(encode, limit)
    assert memo.column(values) == [v.encode() for v in values]
    assert len(seen) == calls
    assert len(memo) == held <= limit


def test_a_value_the_function_raises_on_is_not_stored() -> None:
    memo = Memo(int, 10)
    assert memo.column(["1", "2"]) == [1, 2]
    with pytest.raises(ValueError):
        memo.column(["x"])
    assert "x" not in memo
