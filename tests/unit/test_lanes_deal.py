"""attribution/lanes.py `deal`: whole chunks to each lane in turn, nothing lost or repeated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.lanes import MAX_WORKERS, deal
from core.settings import Settings


@pytest.mark.parametrize(
    ("chunks", "lanes", "dealt"),
    [
        ([], 2, [[], []]),
        ([["a"]], 2, [["a"], []]),
        ([["a", "b"], ["c"], ["d", "e"]], 2, [["a", "b", "d", "e"], ["c"]]),
        ([["a"], ["b"], ["c"], ["d"]], 3, [["a", "d"], ["b"], ["c"]]),
        ([["a"], ["b"]], 1, [["a", "b"]]),
    ],
)
def test_deal(chunks, lanes, dealt) -> None:
    assert deal(iter(chunks), lanes) == dealt


@given(st.lists(st.lists(st.text(max_size=3), min_size=1, max_size=4), max_size=20), st.integers(1, 6))
def test_every_order_is_dealt_once_and_chunks_stay_whole(chunks, lanes) -> None:
    dealt = deal(iter(chunks), lanes)
    assert len(dealt) == lanes
    assert sorted(o for lane in dealt for o in lane) == sorted(o for chunk in chunks for o in chunk)
    for index, lane in enumerate(dealt):
        assert lane == [o for chunk in chunks[index::lanes] for o in chunk]


def test_the_setting_allows_what_lanes_take() -> None:
    field = Settings.model_fields["attribution_workers"]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert (bounds["Ge"].ge, bounds["Le"].le) == (1, MAX_WORKERS)
