"""Every ClickHouse query the project runs, in one place and one style: a function that takes the backend
and the values, runs its SQL and returns plain values or row contracts (core/rows.py). Each runs
unchanged on ClickHouse 18.16 and on a current ClickHouse (the tests run all of them on both); values come
back as plain ints and strings (dates as 'YYYY-MM-DD' text, times as unix seconds), never as
driver-specific types. Callers on an event loop run them in a thread (`asyncio.to_thread`).

Rollups are read with sum(...) GROUP BY: SummingMergeTree adds rows up only when it merges parts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from core.clickhouse import Backend
from core.rows import CommissionRow, OrderEventRow, Row

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


# --- attribution -----------------------------------------------------------------------------------------
# DateTime columns, selected as Unix seconds so that a row reads the same from every backend.
_DATETIME_COLUMNS = frozenset({"ts", "created_at", "occurred_at", "effective_at"})


def _select(row: type[Row], aggregates: dict[str, str] | None = None, default: str = "") -> str:
    """The select list that `row.read` decodes: every column in contract order, DateTimes as seconds,
    each wrapped in its aggregate (or `default`) when the query groups."""
    exprs = []
    for column in row.columns():
        expr = f"toUInt32({column})" if column in _DATETIME_COLUMNS else column
        function = (aggregates or {}).get(column, default)
        exprs.append(f"{function}({expr})" if function else expr)
    return ", ".join(exprs)


def stored_webhook_ids(backend: Backend, merchant_id: str, webhook_ids: Sequence[str]) -> set[str]:
    rows = backend.execute(
        f"SELECT DISTINCT webhook_id FROM {backend.database}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND webhook_id IN %(webhook_ids)s",
        {"merchant_id": merchant_id, "webhook_ids": tuple(webhook_ids)},
    )
    return {row[0] for row in rows}


def orders_with_new_events(backend: Backend, since_ms: int) -> list[tuple[str, str, int]]:
    """(merchant, order, last ingested ms) of orders that received an event stored after `since_ms` (the
    attributor's cursor, with overlap)."""
    rows = backend.execute(
        f"SELECT merchant_id, order_id, max(ingested_ms) FROM {backend.database}.order_events "
        "WHERE ingested_ms > %(since_ms)s GROUP BY merchant_id, order_id",
        {"since_ms": since_ms},
    )
    return [(m, o, int(ms)) for m, o, ms in rows]


def orders_to_revisit(backend: Backend, retry_since_ms: int) -> list[tuple[str, str, int]]:
    """(merchant, order, accrual ms) of orders whose ledger may change with time alone: credited but not
    yet approved (the lock may have passed), or refused for a click not found yet (it may still be
    ingested) and recent enough to retry. The accrual's effective_ms is the order time (0: no accrual)."""
    rows = backend.execute(
        "SELECT merchant_id, order_id, minIf(effective_ms, kind = 'accrual') "
        f"FROM {backend.database}.commissions GROUP BY merchant_id, order_id "
        "HAVING (sum(orders) > 0 AND countIf(kind = 'approval') = 0) "
        "OR (sum(orders) = 0 AND countIf(reason = 'no_click') > 0 "
        "AND max(effective_ms) > %(retry_since_ms)s)",
        {"retry_since_ms": retry_since_ms},
    )
    return [(m, o, int(ms)) for m, o, ms in rows]


def order_events(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> list[OrderEventRow]:
    rows = backend.execute(
        f"SELECT {_select(OrderEventRow)} FROM {backend.database}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s",
        {"merchant_id": merchant_id, "order_ids": tuple(order_ids)},
    )
    return [OrderEventRow.read(row) for row in rows]


def clicks_by_id(
    backend: Backend, click_ids: Sequence[str], days: Sequence[str], from_s: int, to_s: int
) -> list[tuple[str, int, str, str, str, int, int]]:
    """(click_id, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head) of the given ids, reading
    only the days their ids name (the sort key starts with the day) and the time range they span."""
    rows = backend.execute(
        "SELECT click_id, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head "
        f"FROM {backend.database}.clicks WHERE toDate(ts) IN %(days)s "
        "AND ts >= toDateTime(%(from_s)s) AND ts <= toDateTime(%(to_s)s) AND click_id IN %(click_ids)s",
        {"days": tuple(days), "from_s": from_s, "to_s": to_s, "click_ids": tuple(click_ids)},
    )
    return [(c, int(ts), cr, m, h, int(bot), int(head)) for c, ts, cr, m, h, bot, head in rows]


def ledger_for_orders(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> list[CommissionRow]:
    """The stored net per (order, entry id), with one row's explanation, for `ledger.difference`."""
    summed = {"amount_minor": "sum", "orders": "sum", "order_id": "", "entry_id": ""}
    rows = backend.execute(
        f"SELECT {_select(CommissionRow, summed, default='any')} FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s GROUP BY order_id, entry_id",
        {"merchant_id": merchant_id, "order_ids": tuple(order_ids)},
    )
    return [CommissionRow.read(row) for row in rows]


def order_explanation(backend: Backend, merchant_id: str, order_id: str) -> list[CommissionRow]:
    """Every ledger row of one order, oldest booking first: the answer to a dispute."""
    rows = backend.execute(
        f"SELECT {_select(CommissionRow)} FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id = %(order_id)s ORDER BY booked_ms, entry_id",
        {"merchant_id": merchant_id, "order_id": order_id},
    )
    return [CommissionRow.read(row) for row in rows]


def earnings_commissions(backend: Backend, first: date, last: date, creator_id: str) -> list[tuple]:
    """(creator, currency, orders, pending, approved, reversed, gross) per creator and currency over a
    day range, from the daily rollup (never the raw ledger). `gross`, the sum of absolute amounts as a
    Float64, bounds every Int64 sum before it: report.py refuses a row so large that they may have wrapped."""
    return backend.execute(
        "SELECT creator_id, currency, sum(orders), "
        "sumIf(amount_minor, status = 'pending'), sumIf(amount_minor, status = 'approved'), "
        "-sumIf(amount_minor, kind = 'reversal'), sum(abs(toFloat64(amount_minor))) "
        f"FROM {backend.database}.commissions_daily "
        "WHERE day >= toDate(%(from_day)s) AND day <= toDate(%(to_day)s) "
        "AND (%(creator_id)s = '' OR creator_id = %(creator_id)s) AND creator_id != '' "
        "GROUP BY creator_id, currency ORDER BY creator_id, currency",
        {"from_day": str(first), "to_day": str(last), "creator_id": creator_id},
    )


def earnings_clicks(backend: Backend, first: date, last: date, creator_id: str) -> dict[str, int]:
    """Billable-looking clicks per creator (not HEAD, not bot) over a day range."""
    rows = backend.execute(
        f"SELECT creator_id, count() FROM {backend.database}.clicks "
        "WHERE toDate(ts) >= toDate(%(from_day)s) AND toDate(ts) <= toDate(%(to_day)s) "
        "AND (%(creator_id)s = '' OR creator_id = %(creator_id)s) AND is_head = 0 AND is_bot = 0 "
        "GROUP BY creator_id",
        {"from_day": str(first), "to_day": str(last), "creator_id": creator_id},
    )
    return {creator: int(n) for creator, n in rows}


def orders_booked_by_run(
    backend: Backend, merchant_id: str, order_ids: Sequence[str], run_id: str
) -> set[str]:
    """Which of these orders have ledger rows from attributor run `run_id`: tells whether a run that
    stopped between its insert and its event emission had its rows stored (events_out recovery)."""
    rows = backend.execute(
        f"SELECT DISTINCT order_id FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s AND run_id = %(run_id)s",
        {"merchant_id": merchant_id, "order_ids": tuple(order_ids), "run_id": run_id},
    )
    return {row[0] for row in rows}
