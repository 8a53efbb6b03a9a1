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
