"""Queries taking a list of ids split it by the ids' size (queries.id_chunks), so a long list of long ids
never exceeds ClickHouse 18.16's 256 KiB max_query_size: each is asked with 5,000 ids of the longest kind
(128-character order ids, 64-character codes), and answers instead of failing."""

from __future__ import annotations

from datetime import date

import pytest

from core import queries
from core.migrate import migrate

pytestmark = [pytest.mark.clickhouse]

MANY = 5_000


def test_long_id_lists_stay_under_the_query_size_limit(clickhouse) -> None:
    migrate(clickhouse, log=lambda _line: None)
    orders = [f"{n:0128d}" for n in range(MANY)]
    codes = [f"{n:064d}" for n in range(MANY)]
    assert queries.payout_transfers(clickhouse, "m1", orders) == set()
    assert queries.payout_line_counts(clickhouse, "m1", orders) == {}
    assert queries.existing_link_versions(clickhouse, [(code, 1) for code in codes]) == set()
    totals = queries.links_totals(clickhouse, codes)
    assert len(totals) == MANY and totals[codes[-1]] == {"clicks": 0, "unique": 0, "bots": 0}
    day = date(2026, 12, 1)
    assert queries.links_breakdown(clickhouse, codes, "country", day, day) == {}


def test_a_full_attribution_chunk_of_click_ids_fits_the_query_size_limit(clickhouse) -> None:
    """ORDERS_PER_CHUNK ids whose clicks fall at distinct seconds of one day: the click lookups carry the
    ids and their day bounds; both must stay under the limit (two raw bounds per id did not)."""
    from attribution.attributor import CLICK_TIME_SLACK_MS, ORDERS_PER_CHUNK
    from core.clickid import ClickIds, timestamp_ms

    migrate(clickhouse, log=lambda _line: None)
    ids = ClickIds(b"k" * 32)
    day_start_ms = 1_764_547_200_000  # 2025-12-01 00:00 UTC
    click_ids = [ids.new(day_start_ms + n * 17_000) for n in range(ORDERS_PER_CHUNK)]  # a new second each
    bounds = set()
    for click_id in click_ids:
        ts_ms = timestamp_ms(click_id)
        bounds.update(((ts_ms - CLICK_TIME_SLACK_MS) // 1000, (ts_ms + CLICK_TIME_SLACK_MS) // 1000 + 1))
    span = (sorted(click_ids), sorted(bounds), min(bounds), max(bounds))
    assert queries.clicks_by_id(clickhouse, *span) == []
    assert queries.click_details(clickhouse, *span) == []
