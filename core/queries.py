"""Every ClickHouse query the project runs, in one place and one style: a function that takes the backend
and the values, runs its SQL and returns plain values or row contracts (core/rows.py). Each runs
unchanged on ClickHouse 18.16 and on a current ClickHouse (the tests run all of them on both); values come
back as plain ints and strings (dates as 'YYYY-MM-DD' text, times as unix seconds), never as
driver-specific types. Callers on an event loop run them in a thread (`asyncio.to_thread`).

Rollups are read with sum(...) GROUP BY: SummingMergeTree adds rows up only when it merges parts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from core.clickhouse import Backend, IdSet
from core.rows import CommissionRow, OrderEventRow, PayoutLineRow, Row

# Click ids per existence query (fixed-length ids: a few hundred KB at most). Lists of ids of any length
# are split by their size instead (id_chunks).
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
    start = 0
    for codes in id_chunks([code for code, _ in versions]):
        chunk, start = versions[start : start + len(codes)], start + len(codes)
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
    return links_totals(backend, [code])[code]


def links_totals(backend: Backend, codes: Sequence[str]) -> dict[str, dict[str, int]]:
    """All-time totals of each link from the daily rollup (zeros for a link without clicks)."""
    out = {code: {"clicks": 0, "unique": 0, "bots": 0} for code in codes}
    rows = chunked_rows(
        backend,
        "SELECT code, sum(clicks), sum(unique_clicks), sum(bot_clicks) "
        f"FROM {backend.database}.clicks_daily WHERE code IN %(codes)s GROUP BY code",
        {},
        list(codes),
        "codes",
    )
    for code, clicks, unique, bots in rows:
        out[code] = {"clicks": int(clicks), "unique": int(unique), "bots": int(bots)}
    return out


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


def merchant_daily(backend: Backend, merchant_id: str, first: date, last: date) -> list[tuple[str, int, int]]:
    """(day, human clicks, bot clicks) per day with clicks on a merchant's links, oldest first, from the
    rollup sorted by merchant."""
    return _owner_daily(backend, "merchant", merchant_id, first, last)


def _owner_daily(backend: Backend, owner: str, owner_id: str, first: date, last: date) -> list[tuple]:
    """The daily series of `merchant_clicks_daily` or `creator_clicks_daily`: one query for both."""
    if owner not in ("merchant", "creator"):
        raise ValueError(f"unknown owner {owner!r}")
    rows = backend.execute(
        "SELECT toString(day), sum(clicks) - sum(bot_clicks), sum(bot_clicks) "
        f"FROM {backend.database}.{owner}_clicks_daily "
        f"WHERE {owner}_id = %(owner_id)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        "GROUP BY day ORDER BY day",
        {"owner_id": owner_id, "first": first.isoformat(), "last": last.isoformat()},
    )
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def merchant_creators(
    backend: Backend, merchant_id: str, first: date, last: date, limit: int = 20
) -> list[tuple[str, str, int, int, int]]:
    """(creator, currency, orders credited, net commission, gross) per creator and currency of one merchant
    over a day range, most orders first: its creators ranked by sales, from the ledger's daily rollup.
    `gross` (sum of absolute amounts, Float64) lets the caller refuse a sum Int64 may have wrapped."""
    rows = backend.execute(
        "SELECT creator_id, currency, sum(orders) AS sales, sum(amount_minor) AS net, "
        "sum(abs(toFloat64(amount_minor))) "
        f"FROM {backend.database}.commissions_daily "
        "WHERE merchant_id = %(merchant_id)s AND creator_id != '' "
        "AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        "GROUP BY creator_id, currency ORDER BY sales DESC, net DESC, creator_id, currency LIMIT %(limit)s",
        {"merchant_id": merchant_id, "first": first.isoformat(), "last": last.isoformat(), "limit": limit},
    )
    return [(c, cu, int(o), int(n), g) for c, cu, o, n, g in rows]


def merchant_orders(backend: Backend, merchant_id: str, limit: int = 50) -> list[tuple[str, int, int]]:
    """(order_id, events, last received ms) of a merchant's latest orders, newest first: every order with
    an accepted event, credited or not (order_commissions adds what each earned)."""
    rows = backend.execute(
        "SELECT order_id, uniqExact(webhook_id), max(received_ms) AS last_ms "
        f"FROM {backend.database}.order_events WHERE merchant_id = %(merchant_id)s "
        "GROUP BY order_id ORDER BY last_ms DESC, order_id LIMIT %(limit)s",
        {"merchant_id": merchant_id, "limit": limit},
    )
    return [(o, int(n), int(ms)) for o, n, ms in rows]


def order_commissions(
    backend: Backend, merchant_id: str, order_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, str, int]]]:
    """Per order: (creator, currency, status, net amount) of its ledger, one row per creator, currency and
    status with a non-zero net (an order fully reversed shows its reversal as nothing left)."""
    if not order_ids:
        return {}
    rows = backend.execute(
        "SELECT order_id, creator_id, currency, status, sum(amount_minor) AS net "
        f"FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s "
        "GROUP BY order_id, creator_id, currency, status ORDER BY order_id, creator_id, currency, status",
        {"merchant_id": merchant_id, "order_ids": tuple(order_ids)},
    )
    out: dict[str, list[tuple[str, str, str, int]]] = {}
    for order_id, creator_id, currency, status, net in rows:
        if int(net):
            out.setdefault(order_id, []).append((creator_id, currency, status, int(net)))
    return out


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


def creator_daily(backend: Backend, creator_id: str, first: date, last: date) -> list[tuple[str, int, int]]:
    """(day, human clicks, bot clicks) of a creator's links per day with clicks, oldest first, from the
    rollup sorted by creator. Human = every click less the bots', as in `link_breakdown`."""
    return _owner_daily(backend, "creator", creator_id, first, last)


def links_breakdown(
    backend: Backend, codes: Sequence[str], dimension: str, first: date, last: date
) -> dict[str, int]:
    """Human clicks of several links together by country, device or referer host over a period (a
    creator's audience). The codes are sent in chunks; each value has at most a few hundred rows."""
    if dimension not in ("country", "device", "referer_host"):
        raise ValueError(f"unknown dimension {dimension!r}")
    out: dict[str, int] = {}
    rows = chunked_rows(
        backend,
        f"SELECT {dimension}, sum(clicks) - sum(bot_clicks) FROM {backend.database}.clicks_daily_dims "
        "WHERE code IN %(codes)s AND day >= toDate(%(first)s) AND day <= toDate(%(last)s) "
        f"GROUP BY {dimension}",
        {"first": first.isoformat(), "last": last.isoformat()},
        codes,
        "codes",
    )
    for value, human in rows:
        out[value] = out.get(value, 0) + int(human)
    return out


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
    """Which of a merchant's webhook ids are stored: the orders ingester's check of a recovered batch,
    up to a batch of ids (100,000 by default) of up to 256 characters each."""
    rows = chunked_rows(
        backend,
        f"SELECT DISTINCT webhook_id FROM {backend.database}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND webhook_id IN %(webhook_ids)s",
        {"merchant_id": merchant_id},
        webhook_ids,
        "webhook_ids",
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


# Bytes of quoted ids per IN list: 18.16 refuses a query longer than 256 KiB (max_query_size), and
# order ids may be 128 characters (2,000 of those already pass it); short ids go 20,000 or more at once.
IN_LIST_BYTES = 200_000


# Characters the driver escapes as two (a backslash and one more).
_ESCAPED = re.compile(r"[\\'\x00\x07-\x0d]")  # \\, ', NUL, \a \b \t \n \v \f \r


def id_chunks(ids: Sequence[str], max_bytes: int = IN_LIST_BYTES) -> Iterable[Sequence[str]]:
    """`ids` in consecutive slices whose quoted, escaped text stays within `max_bytes`: few queries for
    many short ids, and never one over the server's query size limit."""
    start, size = 0, 0
    for n, item in enumerate(ids):
        raw = len(item.encode())
        # Two quotes, a comma and a space; every byte twice, as an upper bound, if anything is escaped.
        quoted = raw + 4 + (raw if _ESCAPED.search(item) else 0)
        if size + quoted > max_bytes and n > start:
            yield ids[start:n]
            start, size = n, 0
        size += quoted
    if start < len(ids):
        yield ids[start:]


def chunked_rows(backend: Backend, sql: str, params: dict, ids: Sequence[str], name: str) -> Iterable[tuple]:
    """The rows of `sql` with the parameter `name` bound to `ids`, for a query over a list of string ids
    of any length: none can pass the server's query size limit. A backend that ships id sets as external
    tables runs it once; otherwise it runs once per `id_chunks(ids)`, each slice a literal. (A list of
    bounded length, such as a chunk's click ids, is passed as an IdSet directly.)"""
    if backend.ships_id_sets:
        if ids:
            yield from backend.execute(sql, {**params, name: IdSet(ids)})
        return
    for chunk in id_chunks(ids):
        yield from backend.execute(sql, {**params, name: IdSet(chunk)})


def order_events(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> list[OrderEventRow]:
    """Every stored event of these orders (as many queries as `id_chunks` makes: pass ids sorted, so
    each reads a narrow range of the table's order-id sort key)."""
    rows = chunked_rows(
        backend,
        f"SELECT {_select(OrderEventRow)} FROM {backend.database}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s",
        {"merchant_id": merchant_id},
        order_ids,
        "order_ids",
    )
    return [OrderEventRow.read(row) for row in rows]


# The columns of order_events the ledger reads (attribution/events.py `event_of_facts`), in that order.
ORDER_EVENT_FACTS = (
    "merchant_id",
    "webhook_id",
    "event_type",
    "order_id",
    "click_id",
    "currency",
    "occurred_ms",
    "item_sku",
    "item_category",
    "item_unit_price_minor",
    "item_quantity",
    "discount_codes",
    "received_ms",
)


def order_event_facts(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> list[tuple]:
    """`order_events` reduced to ORDER_EVENT_FACTS, as plain tuples (chunked like it): the attributor
    reads every event of 100,000s of orders a run, and decoding the columns it never uses (and a row
    contract per event) was a tenth of its time."""
    return list(
        chunked_rows(
            backend,
            f"SELECT {', '.join(ORDER_EVENT_FACTS)} FROM {backend.database}.order_events "
            "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s",
            {"merchant_id": merchant_id},
            order_ids,
            "order_ids",
        )
    )


def order_click_ids(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> dict[str, str]:
    """The click id each order's `order.created` event names (the least, if two such events differ; ""
    for none), for orders that have one: what the attributor deals its lanes by, before any lane reads
    the orders' events (attribution/lanes.py). Two short columns, not every event's facts."""
    rows = chunked_rows(
        backend,
        f"SELECT order_id, min(click_id) FROM {backend.database}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s "
        "AND event_type = 'order.created' GROUP BY order_id",
        {"merchant_id": merchant_id},
        order_ids,
        "order_ids",
    )
    return dict(rows)


def clicks_by_id(
    backend: Backend, click_ids: Sequence[str], bounds_s: Sequence[int], from_s: int, to_s: int
) -> list[tuple[str, int, str, str, str, int, int]]:
    """(click_id, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head) of the given ids, reading
    only the time range they span and, within it, only the days of `bounds_s` (see `_click_days`)."""
    rows = backend.execute(
        "SELECT click_id, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head "
        f"FROM {backend.database}.clicks {_CLICKS_OF_IDS}",
        _click_span_params(click_ids, bounds_s, from_s, to_s),
    )
    return [(c, int(ts), cr, m, h, int(bot), int(head)) for c, ts, cr, m, h, bot, head in rows]


# The days a set of click ids can be stored under: those of the bounds of each id's time window (the
# window is seconds long, so a click's day is the day of one end of it). The server works the days out
# in its own time zone, which `toDate(ts)` in the sort key uses; the subquery reads no table (no GLOBAL
# needed on a cluster) and its set still selects the key's day ranges, as a literal list would.
_CLICK_SPAN = (
    "toDate(ts) IN (SELECT DISTINCT toDate(toDateTime(arrayJoin(%(bounds_s)s)))) "
    "AND ts >= toDateTime(%(from_s)s) AND ts <= toDateTime(%(to_s)s)"
)
# The clicks of a set of ids within their span. PREWHERE reads the ids' column first and the rest only
# where one matched. 18.16 moves a literal list there by itself but not a set sent as an external table
# (IdSet): without it, a run's click reads at 50 M clicks took 2.9 s instead of 1.45 s.
_CLICKS_OF_IDS = f"PREWHERE click_id IN %(click_ids)s WHERE {_CLICK_SPAN}"


# Bounds only choose days, and every time zone in use is a whole number of quarter hours from UTC, so a
# bound rounded down to its quarter hour has the same day anywhere: at most 96 values a day, whatever the
# number of ids (two 10-digit bounds per id took a 5,000-id chunk past the 256 KiB query limit).
DAY_BOUND_STEP_S = 900


def _click_span_params(click_ids: Sequence[str], bounds_s: Sequence[int], from_s: int, to_s: int) -> dict:
    return {
        "bounds_s": sorted({bound - bound % DAY_BOUND_STEP_S for bound in bounds_s}),
        "from_s": from_s,
        "to_s": to_s,
        "click_ids": IdSet(click_ids),
    }


def ledger_for_orders(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> list[CommissionRow]:
    """The stored net per order and `ledger.key` (entry id, status, creator, currency, click), with one
    row's explanation, for `ledger.difference` (chunked like `order_events`)."""
    grouped = ("order_id", "entry_id", "status", "creator_id", "currency", "click_id")
    summed = {"amount_minor": "sum", "orders": "sum", **dict.fromkeys(grouped, "")}
    rows = chunked_rows(
        backend,
        f"SELECT {_select(CommissionRow, summed, default='any')} FROM {backend.database}.commissions "
        # A payout's transfer rows are never an order's, whatever id an order event carried before the
        # webhook refused `payout:` (attribution/payouts.py): read as one, they were reversed or paid again.
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s AND kind != 'payout' "
        f"GROUP BY {', '.join(grouped)}",
        {"merchant_id": merchant_id},
        order_ids,
        "order_ids",
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


def creator_orders(backend: Backend, creator_id: str, since: date, limit: int) -> list[CommissionRow]:
    """Every ledger row of a creator's latest `limit` orders (by last booking) with effect since `since`,
    oldest booking first within an order: the creator's side of `order_explanation`. The ledger is sorted
    by merchant and order, so the period bounds the partitions read."""
    db = backend.database
    params = {"creator_id": creator_id, "since": since.isoformat(), "limit": limit}
    latest = backend.execute(
        f"SELECT merchant_id, order_id FROM {db}.commissions "
        "WHERE creator_id = %(creator_id)s AND effective_at >= toDateTime(toDate(%(since)s)) "
        "GROUP BY merchant_id, order_id ORDER BY max(booked_ms) DESC, merchant_id, order_id LIMIT %(limit)s",
        params,
    )
    if not latest:
        return []
    wanted = {(m, o) for m, o in latest}
    rows = backend.execute(
        f"SELECT {_select(CommissionRow)} FROM {db}.commissions "
        "WHERE creator_id = %(creator_id)s AND order_id IN %(order_ids)s "
        "ORDER BY merchant_id, order_id, booked_ms, entry_id",
        {"creator_id": creator_id, "order_ids": tuple(sorted({o for _, o in latest}))},
    )
    found = [CommissionRow.read(row) for row in rows]
    return [row for row in found if (row.merchant_id, row.order_id) in wanted]


def creator_payout_ids(backend: Backend, creator_id: str, limit: int) -> list[str]:
    """The ids of a creator's latest `limit` payouts (their records and statuses are in Redis:
    attribution/payoutbook.py), newest first, from `payout_lines`."""
    rows = backend.execute(
        f"SELECT payout_id FROM {backend.database}.payout_lines WHERE creator_id = %(creator_id)s "
        "GROUP BY payout_id ORDER BY max(created_ms) DESC, payout_id LIMIT %(limit)s",
        {"creator_id": creator_id, "limit": limit},
    )
    return [r[0] for r in rows]


# --- discount codes, review, trace (attribution/review.py, attribution/trace.py) ---------------------------
def click_details(
    backend: Backend, click_ids: Sequence[str], bounds_s: Sequence[int], from_s: int, to_s: int
) -> list[tuple[str, str, int]]:
    """(click_id, link code, ip_hash) of the given ids, read like `clicks_by_id`: what a review rule and
    a trace need beyond the attribution facts."""
    rows = backend.execute(
        f"SELECT click_id, code, ip_hash FROM {backend.database}.clicks {_CLICKS_OF_IDS}",
        _click_span_params(click_ids, bounds_s, from_s, to_s),
    )
    return [(c, code, int(ip)) for c, code, ip in rows]


def is_creators_click(
    backend: Backend,
    merchant_id: str,
    creator_id: str,
    click_ids: Sequence[str],
    bounds_s: Sequence[int],
    from_s: int,
    to_s: int,
) -> bool:
    """Whether one of the given ids (read like `clicks_by_id`) is a click of `creator_id` that may earn
    `merchant_id`'s order: recorded for that merchant, or for none yet (rules.ineligibility: a host's owner
    claims its earlier clicks). The clicks' sort key is (day, creator), so this reads that creator's part
    of the days, not the whole days."""
    rows = backend.execute(
        f"SELECT count() FROM {backend.database}.clicks WHERE {_CLICK_SPAN} "
        "AND creator_id = %(creator_id)s AND merchant_id IN (%(merchant_id)s, '') "
        "AND click_id IN %(click_ids)s",
        {
            **_click_span_params(click_ids, bounds_s, from_s, to_s),
            "creator_id": creator_id,
            "merchant_id": merchant_id,
        },
    )
    return bool(rows and rows[0][0])


def human_clicks_per_ip_hour(
    backend: Backend, creator_ids: Sequence[str], ip_hashes: Sequence[int], hours: Sequence[int]
) -> dict[tuple[str, int, int, str, str], int]:
    """Human clicks (not bot, not HEAD) per (creator, ip_hash, hour since the epoch in UTC, merchant_id,
    dest_host) for the given creators, IP hashes and hours: the review rule `max_clicks_per_ip_hour`, which
    counts a merchant's clicks only (the caller tells them by rules.is_merchants). dest_host is '' where
    merchant_id is set: only a click recorded for nobody needs its host's owner. Reads only those hours."""
    if not (creator_ids and ip_hashes and hours):
        return {}
    days = sorted({str(date(1970, 1, 1) + timedelta(days=h // 24)) for h in hours})
    rows = backend.execute(
        "SELECT creator_id, ip_hash, intDiv(toUInt32(ts), 3600) AS hour, merchant_id, "
        "if(merchant_id = '', dest_host, '') AS host, count() "
        f"FROM {backend.database}.clicks WHERE toDate(ts) IN %(days)s "
        "AND ts >= toDateTime(%(from_s)s) AND ts < toDateTime(%(to_s)s) "
        "AND creator_id IN %(creators)s AND ip_hash IN %(hashes)s AND is_bot = 0 AND is_head = 0 "
        "GROUP BY creator_id, ip_hash, hour, merchant_id, host",
        {
            "days": tuple(days),
            "from_s": min(hours) * 3600,
            "to_s": (max(hours) + 1) * 3600,
            # A chunk's 5,000 clicks may name 5,000 creators and hashes, past a literal's 256 KiB.
            "creators": IdSet(creator_ids),
            "hashes": IdSet(ip_hashes, "UInt64"),
        },
    )
    wanted = set(hours)
    return {(c, int(ip), int(h), m, host): int(n) for c, ip, h, m, host, n in rows if int(h) in wanted}


def review_state(backend: Backend, merchant_id: str, order_id: str) -> tuple[int, int]:
    """(orders held in review: 1 or 0, net amount in review) of one order: whether a review decision has
    anything to decide. Counted by the accrual's `orders`, so an accrual that a later run moved out of
    review (its negation carries -1) no longer counts, and a zero-rate accrual still does."""
    rows = backend.execute(
        "SELECT sumIf(orders, kind = 'accrual' AND status = 'review'), "
        f"sumIf(amount_minor, status = 'review') FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id = %(order_id)s",
        {"merchant_id": merchant_id, "order_id": order_id},
    )
    count, amount = rows[0] if rows else (0, 0)
    return int(count or 0), int(amount or 0)


# --- payouts (attribution/payouts.py) ---------------------------------------------------------------
def has_column(backend: Backend, table: str, column: str) -> bool:
    """Whether a table of this database has a column (a column another feature may add later)."""
    rows = backend.execute(
        "SELECT count() FROM system.columns WHERE database = %(db)s AND table = %(t)s AND name = %(c)s",
        {"db": backend.database, "t": table, "c": column},
    )
    return bool(int(rows[0][0]))


# What identifies a ledger row to payouts (attribution/payouts.py Line.key): one attributor run books an
# entry id of an order once per credit, and a moved credit books it for the old creator or currency (the
# reversal) and the new one in the same run.
_LINE_KEY = "order_id, entry_id, run_id, creator_id, currency"


def _candidates(db: str) -> str:
    """The ledger rows a batch may pay (attribution/payouts.py): approved, not a payout transfer, not zero,
    booked before `until_ms`, and not paid by a live payout of another batch (the rows this batch has
    linked already stay candidates, so a batch cut short is finished with the same totals).

    Every subquery over another table is `GLOBAL`: on a cluster both tables are `Distributed`, and a plain
    `IN` would be run by each shard against its own part of the subquery's table (ClickHouse refuses that,
    Code 288); `GLOBAL` runs the subquery once, on the node asked, and ships its result to the shards. On
    one node it is the same as `IN`."""
    return (
        "merchant_id = %(m)s AND status = 'approved' AND kind != 'payout' AND amount_minor != 0 "
        f"AND booked_ms < %(until_ms)s AND ({_LINE_KEY}) GLOBAL NOT IN ("
        f"SELECT {_LINE_KEY} FROM {db}.payout_lines WHERE merchant_id = %(m)s "
        f"GROUP BY {_LINE_KEY} HAVING sum(sign) > 0 AND countIf(batch_id = %(batch)s) = 0)"
    )


# attribution/payouts.py payout_id_of, in SQL: the same SHA-256 of the same parts, so the lines a batch
# links inside ClickHouse carry the ids the batch planned.
_PAYOUT_ID_SQL = (
    "concat(merchant_id, '.', substring(lower(hex(SHA256(concat('payout', '\\0', merchant_id, '\\0', "
    "toString(%(until_ms)s), '\\0', creator_id, '\\0', currency)))), 1, 20))"
)


def payable_totals(backend: Backend, merchant_id: str, until_ms: int, batch_id: str) -> list[tuple]:
    """(creator, currency, sum, rows) of the rows batch `batch_id` up to `until_ms` may pay."""
    rows = backend.execute(
        f"SELECT creator_id, currency, sum(amount_minor), count() FROM {backend.database}.commissions "
        f"WHERE {_candidates(backend.database)} GROUP BY creator_id, currency",
        {"m": merchant_id, "until_ms": until_ms, "batch": batch_id},
    )
    return [(c, cu, int(a), int(n)) for c, cu, a, n in rows]


def link_payable(
    backend: Backend,
    merchant_id: str,
    until_ms: int,
    batch_id: str,
    min_amount_minor: int,
    now_ms: int,
    attributed_by: bool,
) -> None:
    """Write one payout line (sign +1) per candidate row of every (creator, currency) whose candidates sum
    to a payout (positive, at least the minimum), except rows this batch linked already: one INSERT ...
    SELECT, so the rows never travel through Python. Runs under the ledger's writer lock. On a cluster the
    insert goes through the `Distributed` table synchronously (core/cluster.py), so `batch_lines` right
    after it reads every line."""
    db = backend.database
    candidates = _candidates(db)
    by = "attributed_by" if attributed_by else "''"
    backend.execute(
        f"INSERT INTO {db}.payout_lines ({', '.join(PayoutLineRow.columns())}) "
        f"SELECT merchant_id, {_PAYOUT_ID_SQL}, %(batch)s, creator_id, currency, order_id, entry_id, run_id, "
        f"1, kind, sku, quantity, basis_minor, rate_bps, amount_minor, {by}, booked_ms, "
        f"toDateTime(%(now_s)s), %(now_ms)s FROM {db}.commissions WHERE {candidates} "
        "AND (creator_id, currency) GLOBAL IN ("
        f"SELECT creator_id, currency FROM {db}.commissions WHERE {candidates} "
        "GROUP BY creator_id, currency HAVING sum(amount_minor) > 0 AND sum(amount_minor) >= %(min)s) "
        f"AND ({_LINE_KEY}) GLOBAL NOT IN ("
        f"SELECT {_LINE_KEY} FROM {db}.payout_lines "
        "WHERE merchant_id = %(m)s AND batch_id = %(batch)s)",
        {
            "m": merchant_id,
            "until_ms": until_ms,
            "batch": batch_id,
            "min": min_amount_minor,
            "now_s": now_ms // 1000,
            "now_ms": now_ms,
        },
    )


def batch_lines(backend: Backend, merchant_id: str, batch_id: str) -> dict[str, tuple[int, int]]:
    """payout_id → (lines, sum) of the lines a batch linked (sign +1)."""
    rows = backend.execute(
        f"SELECT payout_id, count(), sum(amount_minor) FROM {backend.database}.payout_lines "
        "WHERE merchant_id = %(m)s AND batch_id = %(batch)s AND sign = 1 GROUP BY payout_id",
        {"m": merchant_id, "batch": batch_id},
    )
    return {p: (int(n), int(a)) for p, n, a in rows}


def payout_line_counts(backend: Backend, merchant_id: str, payout_ids: Sequence[str]) -> dict[tuple, int]:
    """(payout_id, sign) → stored lines: tells a resumed batch or failure what was already written.
    Asked in chunks: a batch may hold tens of thousands of payouts (18.16 caps a query at 256 KiB)."""
    rows = chunked_rows(
        backend,
        f"SELECT payout_id, sign, count() FROM {backend.database}.payout_lines "
        "WHERE merchant_id = %(m)s AND payout_id IN %(ids)s GROUP BY payout_id, sign",
        {"m": merchant_id},
        payout_ids,
        "ids",
    )
    return {(p, int(sign)): int(n) for p, sign, n in rows}


def payout_transfers(backend: Backend, merchant_id: str, order_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(order_id, entry_id) of the payout transfer rows already in the ledger for these payouts."""
    rows = chunked_rows(
        backend,
        f"SELECT DISTINCT order_id, entry_id FROM {backend.database}.commissions "
        "WHERE merchant_id = %(m)s AND order_id IN %(ids)s AND kind = 'payout'",
        {"m": merchant_id},
        order_ids,
        "ids",
    )
    return {(o, e) for o, e in rows}


def payout_lines(backend: Backend, merchant_id: str, payout_id: str) -> list[PayoutLineRow]:
    """The ledger rows one payout pays (its sign +1 lines), by order and entry (and by amount: a credit
    moved between two clicks books two rows of one line key, -P and +P)."""
    rows = backend.execute(
        f"SELECT {_select(PayoutLineRow)} FROM {backend.database}.payout_lines "
        f"WHERE merchant_id = %(m)s AND payout_id = %(p)s AND sign = 1 ORDER BY {_LINE_KEY}, amount_minor",
        {"m": merchant_id, "p": payout_id},
    )
    return [PayoutLineRow.read(row) for row in rows]


def earnings_by_status(backend: Backend, first: date, last: date, creator_id: str) -> list[tuple]:
    """(creator, currency, status, amount) per creator, currency and ledger status over a day range, from
    the daily rollup: every status there is (pending, approved, review, in_payout, paid, ...)."""
    rows = backend.execute(
        "SELECT creator_id, currency, status, sum(amount_minor) "
        f"FROM {backend.database}.commissions_daily "
        "WHERE day >= toDate(%(from_day)s) AND day <= toDate(%(to_day)s) "
        "AND (%(creator_id)s = '' OR creator_id = %(creator_id)s) AND creator_id != '' "
        "GROUP BY creator_id, currency, status",
        {"from_day": str(first), "to_day": str(last), "creator_id": creator_id},
    )
    return [(c, cu, s, int(a)) for c, cu, s, a in rows]


def variant_conversion(backend: Backend, code: str) -> list[tuple[int, int, int, int]]:
    """(variant, human clicks, orders credited, net commission in minor units) per smart-link variant of
    one link: its clicks joined with the ledger by click_id (the README's A/B comparison). A link's
    destinations are one merchant's shop in one currency, so the commission sum is one currency."""
    db = backend.database
    rows = backend.execute(
        "SELECT variant, count(), sum(orders), sum(net_minor) FROM "
        f"(SELECT click_id, variant FROM {db}.clicks "
        "WHERE code = %(code)s AND is_bot = 0 AND is_head = 0) AS c "
        "ALL LEFT JOIN "
        "(SELECT click_id, uniqExactIf(order_id, kind = 'accrual') AS orders, sum(amount_minor) AS net_minor "
        f"FROM {db}.commissions WHERE click_id != '' GROUP BY click_id) AS m "
        "USING click_id GROUP BY variant ORDER BY variant",
        {"code": code},
    )
    return [(int(v), int(c), int(o), int(n)) for v, c, o, n in rows]


def orders_booked_by_run(
    backend: Backend, merchant_id: str, order_ids: Sequence[str], run_id: str
) -> set[str]:
    """Which of these orders have ledger rows from attributor run `run_id`: tells whether a run that
    stopped between its insert and its event emission had its rows stored (events_out recovery)."""
    rows = chunked_rows(
        backend,
        f"SELECT DISTINCT order_id FROM {backend.database}.commissions "
        "WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s AND run_id = %(run_id)s",
        {"merchant_id": merchant_id, "run_id": run_id},
        order_ids,
        "order_ids",
    )
    return {row[0] for row in rows}
