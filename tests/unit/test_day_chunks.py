"""attributor._day_chunks: the run's orders (in click-time order) cut at each click day and at the chunk
size, so that no chunk's click lookup scans days another chunk scans too."""

from __future__ import annotations

import pytest

from attribution.attributor import DAY_MS, _day_chunks
from attribution.ledger import OrderEvent
from core.clickid import ClickIds

IDS = ClickIds(b"test-secret")
T0 = 20_000 * DAY_MS


def created(at_ms: list[int | None]) -> dict[str, OrderEvent | None]:
    out: dict[str, OrderEvent | None] = {}
    for n, ms in enumerate(at_ms):
        click_id = IDS.new(ms) if ms is not None else ""
        out[f"o{n}"] = (
            None if ms is None else OrderEvent("m1", f"w{n}", "order.created", f"o{n}", click_id, "EUR", ms)
        )
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
    orders = created(clicks)
    chunks = list(_day_chunks(list(orders), orders, size))
    assert [len(c) for c in chunks] == sizes
    assert [o for c in chunks for o in c] == list(orders)  # every order once, in order
