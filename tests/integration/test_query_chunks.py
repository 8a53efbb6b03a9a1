"""Queries taking a long list of ids never pass ClickHouse 18.16's 256 KiB max_query_size: each is asked
with 5,000 ids of the longest kind (128-character order ids, 64-character codes, 256-character webhook
ids) and answers instead of failing. On 18.16 the ids go as an external table (core.clickhouse.IdSet);
the literal lists cut by size (queries.id_chunks) are chdb's (tests/integration/test_id_sets.py)."""

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
    from attribution.chunks import ORDERS_PER_CHUNK
    from attribution.clicklookup import CLICK_TIME_SLACK_MS
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


def test_a_recovered_batch_of_the_longest_webhook_ids_is_checked(clickhouse) -> None:
    """The orders ingester asks which webhook ids of a recovered batch are stored: up to a batch of ids of
    up to 256 characters (5,000 of them are 1.3 MB as a literal list)."""
    migrate(clickhouse, log=lambda _line: None)
    ids = [f"{n:05d}" + "w" * 251 for n in range(MANY)]
    stored = ids[::997]
    orders = [f"o{n}" for n in range(len(stored))]
    clickhouse.insert(
        "order_events",
        ("merchant_id", "webhook_id", "event_type", "order_id"),
        [["m1"] * len(stored), stored, ["created"] * len(stored), orders],
    )
    assert queries.stored_webhook_ids(clickhouse, "m1", ids) == set(stored)
    assert queries.stored_webhook_ids(clickhouse, "m2", ids) == set()


def test_a_chunk_of_clicks_of_many_creators_and_addresses_is_counted(clickhouse) -> None:
    """The review rule's count of human clicks per (creator, IP hash, hour, merchant) for a chunk of 5,000
    clicks, each of another creator (64 characters) and address: the hashes go as a UInt64 set."""
    from tests.integration.test_schema import click_row, insert_clicks

    migrate(clickhouse, log=lambda _line: None)
    creators = [f"{n:064d}" for n in range(MANY)]
    hashes = [2**64 - 1 - n for n in range(MANY)]
    hour = 490_250
    at_ms = hour * 3_600_000
    insert_clicks(
        clickhouse,
        [
            click_row("c1", at_ms, "a", creator_id=creators[0], ip_hash=hashes[0]),
            click_row("c2", at_ms + 60_000, "a", creator_id=creators[0], ip_hash=hashes[0]),
            click_row("c3", at_ms + 61_000, "a", creator_id=creators[0], ip_hash=hashes[0], is_bot=1),
            click_row("c4", at_ms + 3_599_000, "a", creator_id=creators[-1], ip_hash=hashes[-1]),
            click_row("c5", at_ms + 3_600_000, "a", creator_id=creators[-1], ip_hash=hashes[-1]),  # next hour
            click_row("c6", at_ms, "a", creator_id=creators[1], ip_hash=7),  # a hash not asked for
        ],
    )
    counts = queries.human_clicks_per_ip_hour(clickhouse, creators, hashes, [hour])
    # keyed also by the merchant recorded for, and by the host where it is nobody (here m1 for all)
    assert counts == {
        (creators[0], hashes[0], hour, "m1", ""): 2,
        (creators[-1], hashes[-1], hour, "m1", ""): 1,
    }
