"""The unique flag's scatter (redirector/ingest/unique.py): values put back at their indexes among zeros,
as the flags of a reordered batch or of its people among bots are, in one C-level pass."""

from __future__ import annotations

import pytest

from redirector.ingest.unique import scatter


@pytest.mark.parametrize(
    ("values", "indexes", "count", "expected"),
    [
        ([], [], 0, []),
        ([], [], 3, [0, 0, 0]),  # a batch of bots only: nobody flagged
        ([1, 1, 0], [0, 1, 2], 3, [1, 1, 0]),  # in order
        ([1, 0, 1], [2, 0, 1], 3, [0, 1, 1]),  # a permutation (a batch sorted by hour)
        ([1, 1], [1, 3], 5, [0, 1, 0, 1, 0]),  # people among bots
        ([1], iter([4]), 5, [0, 0, 0, 0, 1]),  # indexes as an iterator (compress)
    ],
)
def test_scatter(values: list[int], indexes, count: int, expected: list[int]) -> None:
    assert scatter(values, indexes, count) == expected


@pytest.mark.parametrize(("values", "indexes"), [([1, 0], [0]), ([1], [0, 2]), ([1], iter([]))])
def test_values_and_places_of_different_lengths_are_refused(values: list[int], indexes) -> None:
    with pytest.raises(ValueError, match="scatter"):
        scatter(values, indexes, 3)
