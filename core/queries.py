"""Every click-side ClickHouse query the project runs, in one place. Each runs unchanged on ClickHouse
18.16 and on a current ClickHouse (the tests run all of them on both); values come back as plain ints
and strings (dates as 'YYYY-MM-DD' text, times as unix seconds), never as driver-specific types.

Rollups are read with sum(...) GROUP BY: SummingMergeTree adds rows up only when it merges parts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from core.clickhouse import Backend

CLICK_COLUMNS = (
    "click_id",
    "ts",
    "ts_ms",
    "code",
    "creator_id",
    "merchant_id",
    "dest_host",
    "is_head",
    "is_bot",
    "bot_reason",
    "is_unique",
    "country",
    "device",
    "browser",
    "os",
    "referer_host",
    "user_agent",
    "ip_hash",
    "ip_prefix",
    "stream_entry",
)
LINK_COLUMNS = (
    "code",
    "url",
    "creator_id",
    "merchant_id",
    "host",
    "created_at",
    "created_at_ms",
    "disabled",
    "updated_at_ms",
)
# Ids per existence query: keeps the SQL text (and the IN set) a few hundred KB at most.
EXISTS_CHUNK = 5_000
DAY_MS = 86_400_000


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def existing_click_ids(backend: Backend, ids_ts_ms: Sequence[tuple[str, int]]) -> set[str]:
    """Which of these (click_id, ts_ms) are stored. Asked one day at a time, so that ClickHouse reads only
    that day's range of the sort key (and its monthly partition), even when a batch mixes clicks of days
    far apart (a spool replayed late)."""
    by_day: dict[int, list[tuple[str, int]]] = {}
    for click_id, ts_ms in ids_ts_ms:
        by_day.setdefault(ts_ms // DAY_MS, []).append((click_id, ts_ms))
    found: set[str] = set()
    for day_ids in by_day.values():
        for chunk in _chunks(day_ids, EXISTS_CHUNK):
            rows = backend.execute(
                f"SELECT click_id FROM {backend.database}.clicks "
                "WHERE ts >= toDateTime(%(lo)s) AND ts <= toDateTime(%(hi)s) AND click_id IN %(ids)s",
                {
                    "lo": min(ts for _, ts in chunk) // 1000,
                    "hi": max(ts for _, ts in chunk) // 1000,
                    "ids": tuple(click_id for click_id, _ in chunk),
                },
            )
            found.update(row[0] for row in rows)
    return found


def existing_link_versions(backend: Backend, versions: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of these (code, updated_at_ms) link versions are stored."""
    found: set[tuple[str, int]] = set()
    for chunk in _chunks(versions, EXISTS_CHUNK):
        rows = backend.execute(
            f"SELECT code, updated_at_ms FROM {backend.database}.links WHERE code IN %(codes)s",
            {"codes": tuple({code for code, _ in chunk})},
        )
        found.update({(row[0], int(row[1])) for row in rows} & set(chunk))
    return found


def click_count(backend: Backend) -> int:
    """Rows in `clicks`: each recorded click is stored once, so this is the number of clicks."""
    return int(backend.execute(f"SELECT count() FROM {backend.database}.clicks")[0][0])


def link_totals_sync(backend: Backend, code: str) -> dict[str, int]:
    rows = backend.execute(
        f"SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) FROM {backend.database}.clicks_daily "
        "WHERE code = %(code)s",
        {"code": code},
    )
    clicks, unique, bots = rows[0] if rows else (0, 0, 0)
    return {"clicks": int(clicks), "unique": int(unique), "bots": int(bots)}


async def link_totals(backend: Backend, code: str) -> dict[str, int]:
    """A link's all-time totals from the daily rollup: `clicks` (bots and HEAD included), `unique` human
    clicks, `bots` (bots and link previews). Runs off the event loop."""
    return await asyncio.to_thread(link_totals_sync, backend, code)


def link_daily(backend: Backend, code: str, first: date, last: date) -> list[dict[str, Any]]:
    """A link's daily series (days with clicks only), oldest first."""
    rows = backend.execute(
        "SELECT toString(day), sum(clicks), sum(unique_clicks), sum(bot_clicks) "
        f"FROM {backend.database}.clicks_daily "
        "WHERE code = %(code)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        "GROUP BY day ORDER BY day",
        {"code": code, "first": first.isoformat(), "last": last.isoformat()},
    )
    return [{"day": r[0], "clicks": int(r[1]), "unique": int(r[2]), "bots": int(r[3])} for r in rows]


def creator_clicks(backend: Backend, creator_id: str, first: date, last: date) -> dict[str, int]:
    """A creator's clicks over a period (a month, say), from the rollup sorted by creator."""
    rows = backend.execute(
        "SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) "
        f"FROM {backend.database}.creator_clicks_daily "
        "WHERE creator_id = %(creator_id)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s)",
        {"creator_id": creator_id, "first": first.isoformat(), "last": last.isoformat()},
    )
    clicks, unique, bots = rows[0] if rows else (0, 0, 0)
    return {"clicks": int(clicks), "unique": int(unique), "bots": int(bots)}


def merchant_top_links(
    backend: Backend, merchant_id: str, first: date, last: date, limit: int = 10
) -> list[dict[str, Any]]:
    """A merchant's links with the most human clicks over a period."""
    rows = backend.execute(
        "SELECT code, any(creator_id), sum(clicks) - sum(bot_clicks) AS human, sum(unique_clicks) "
        f"FROM {backend.database}.merchant_clicks_daily "
        "WHERE merchant_id = %(merchant_id)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        "GROUP BY code ORDER BY human DESC, code LIMIT %(limit)s",
        {"merchant_id": merchant_id, "first": first.isoformat(), "last": last.isoformat(), "limit": limit},
    )
    return [{"code": r[0], "creator_id": r[1], "human_clicks": int(r[2]), "unique": int(r[3])} for r in rows]


def link_breakdown(backend: Backend, code: str, dimension: str, first: date, last: date) -> dict[str, int]:
    """A link's human clicks by country, device or referer host over a period."""
    if dimension not in ("country", "device", "referer_host"):
        raise ValueError(f"unknown dimension {dimension!r}")
    rows = backend.execute(
        f"SELECT {dimension}, sum(clicks) - sum(bot_clicks) FROM {backend.database}.clicks_daily_dims "
        "WHERE code = %(code)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        f"GROUP BY {dimension}",
        {"code": code, "first": first.isoformat(), "last": last.isoformat()},
    )
    return {r[0]: int(r[1]) for r in rows}


def rollup_totals(backend: Backend) -> dict[str, tuple[int, int, int]]:
    """(clicks, unique, bots) summed over each rollup and over raw clicks: equal when ingestion is exact.
    Used by the tests and the benchmark to prove that no click is stored twice or lost in a rollup."""
    db = backend.database
    out = {}
    for name, sql in (
        ("clicks", f"SELECT count(), sum(is_unique), sum(is_bot) FROM {db}.clicks"),
        ("clicks_daily", f"SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) FROM {db}.clicks_daily"),
        (
            "creator_clicks_daily",
            f"SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) FROM {db}.creator_clicks_daily",
        ),
        (
            "merchant_clicks_daily",
            f"SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) FROM {db}.merchant_clicks_daily",
        ),
        (
            "clicks_daily_dims",
            f"SELECT sum(clicks), sum(unique_clicks), sum(bot_clicks) FROM {db}.clicks_daily_dims",
        ),
    ):
        row = backend.execute(sql)[0]
        out[name] = (int(row[0]), int(row[1] or 0), int(row[2] or 0))
    return out


def latest_links(backend: Backend, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The current version of these links in the `links` mirror (argMax: no FINAL needed)."""
    rows = backend.execute(
        "SELECT code, argMax(url, updated_at_ms), argMax(creator_id, updated_at_ms), "
        "argMax(merchant_id, updated_at_ms), argMax(disabled, updated_at_ms), max(updated_at_ms) "
        f"FROM {backend.database}.links WHERE code IN %(codes)s GROUP BY code",
        {"codes": tuple(codes)},
    )
    return {
        r[0]: {
            "url": r[1],
            "creator_id": r[2],
            "merchant_id": r[3],
            "disabled": bool(int(r[4])),
            "updated_at_ms": int(r[5]),
        }
        for r in rows
    }
