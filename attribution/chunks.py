"""How a run cuts one merchant's orders into chunks (pure): in the click-time order of the click ids their
`order.created` events name, at most ORDERS_PER_CHUNK orders a chunk and never two click days in one.

Each chunk's click lookup scans the whole days its ids name (the clicks' sort key starts with the day, not
the id), so chunks that straddled days read each day two or three times: at 10 M clicks that scanning was
most of a run's ClickHouse time. The lanes (lanes.py) deal these same chunks to the worker processes."""

from __future__ import annotations

from collections.abc import Iterator

from attribution import ledger
from core import clickid

# The ids go as an external table (core.clickhouse.IdSet); where they cannot (chdb), 5,000 fixed-length
# click ids are a 170 KB IN list, within the 256 KiB query limit with the day bounds
# (queries.DAY_BOUND_STEP_S).
ORDERS_PER_CHUNK = 5_000
DAY_MS = 86_400_000


def day_chunks(ordered: list[str], click_ms: dict[str, int], size: int) -> Iterator[list[str]]:
    """`ordered` (in click-time order, `click_ms`; 0 or absent: no click) cut into chunks of at most
    `size`, a new one at each click day."""
    chunk: list[str] = []
    day = None
    for order_id in ordered:
        order_day = click_ms.get(order_id, 0) // DAY_MS
        if chunk and (len(chunk) >= size or order_day != day):
            yield chunk
            chunk = []
        chunk.append(order_id)
        day = order_day
    if chunk:
        yield chunk


def click_time(created: ledger.OrderEvent | None) -> int:
    """The click time an order's `order.created` event names (its click id's embedded time); 0: none."""
    return (clickid.timestamp_ms(created.click_id) or 0) if created else 0
