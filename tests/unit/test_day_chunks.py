"""chunks.day_chunks: the run's orders (in click-time order) cut at each click day and at the chunk
size, so that no chunk's click lookup scans days another chunk scans too."""

from __future__ import annotations

import pytest

from attribution.chunks import DAY_MS, click_time, day_chunks
from attribution.ledger import OrderEvent
from core.clickid import ClickIds

IDS = ClickIds(b"test-secret")
T0 = 20_000 * DAY_MS


def click_times(at_ms: list[int | None]) -> dict[str, int]:
    """Each order's click time as the run reads it from its order event's click id (None: no event)."""
    out: dict[str, int] = {}
    for n, ms in enumerate(at_ms):
        order = (
            None
            if ms is None
            else OrderEvent("m1", f"w{n}", "order.created", f"o{n}", IDS.new(ms), "EUR", ms)
        )
        out[f"o{n}"] = click_time(order)
    return out


@pytest.mark.parametrize(
    ("clicks", "size", "sizes"),
    [
        ([], 5, []),
        ([T0, T0 + 1, T0 + 2], 5, [3]),
        ([T0, T0 + 1, T0 + 2], 2, [2, 1]),  # the size still cuts within a day
        ([T0 - 1, T0, T0 + 1], 5, [1, 2]),  # midnight cuts
        ([T0, T0 + DAY_MS, T0 + 3 * DAY_MS], 5, [1, 1, 1]),
        ([None, None, T0], 5, [2, 1]),  # orders without an order event (parked) and no click: day 0
    ],
)
def test_chunks_cut_at_each_click_day_and_at_the_size(clicks, size, sizes) -> None:
    orders = click_times(clicks)
    chunks = list(day_chunks(list(orders), orders, size))
    assert [len(c) for c in chunks] == sizes
    assert [o for c in chunks for o in c] == list(orders)  # every order once, in order
