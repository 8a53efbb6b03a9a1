"""Every ClickHouse query the attribution side runs, in one place. Each runs unchanged on ClickHouse 18.16
and on a current ClickHouse: `%(name)s` parameters, tuples for IN, DateTimes read back as Unix seconds."""

from __future__ import annotations

LEDGER_COLUMNS = (
    "merchant_id",
    "order_id",
    "entry_id",
    "kind",
    "status",
    "amount_minor",
    "orders",
    "currency",
    "creator_id",
    "click_id",
    "sku",
    "quantity",
    "basis_minor",
    "rate_bps",
    "rate_rule",
    "rate_version",
    "reason",
    "event_id",
    "effective_at",
    "effective_ms",
    "booked_ms",
    "run_id",
)


def stored_webhook_ids(db: str) -> str:
    return (
        f"SELECT DISTINCT webhook_id FROM {db}.order_events "
        "WHERE merchant_id = %(merchant_id)s AND webhook_id IN %(webhook_ids)s"
    )


def orders_with_new_events(db: str) -> str:
    """Orders that received an event stored after `since_ms` (the attributor's cursor, with overlap)."""
    return (
        f"SELECT merchant_id, order_id, max(ingested_ms) FROM {db}.order_events "
        "WHERE ingested_ms > %(since_ms)s GROUP BY merchant_id, order_id"
    )


def orders_to_revisit(db: str) -> str:
    """Orders whose ledger may change with time alone: credited but not yet approved (the lock may have
    passed), or refused for a click not found yet (it may still be ingested) and recent enough to retry.
    min(effective_ms) of the accrual is the order time."""
    return (
        f"SELECT merchant_id, order_id, minIf(effective_ms, kind = 'accrual') FROM {db}.commissions "
        "GROUP BY merchant_id, order_id "
        "HAVING (sum(orders) > 0 AND countIf(kind = 'approval') = 0) "
        "OR (sum(orders) = 0 AND countIf(reason = 'no_click') > 0 AND max(effective_ms) > %(retry_since_ms)s)"
    )


def events_for_orders(db: str) -> str:
    return (
        "SELECT merchant_id, webhook_id, event_type, order_id, click_id, currency, occurred_ms, "
        "item_sku, item_category, item_unit_price_minor, item_quantity "
        f"FROM {db}.order_events WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s"
    )


def clicks_by_id(db: str) -> str:
    """The clicks of the given ids, reading only the days their ids name (the sort key starts with the
    day) and the time range they span (partitions)."""
    return (
        "SELECT click_id, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head "
        f"FROM {db}.clicks WHERE toDate(ts) IN %(days)s "
        "AND ts >= toDateTime(%(from_s)s) AND ts <= toDateTime(%(to_s)s) AND click_id IN %(click_ids)s"
    )


def ledger_for_orders(db: str) -> str:
    """The stored net per entry id (with one row's explanation), for `ledger.difference`."""
    return (
        "SELECT order_id, entry_id, any(kind), any(status), sum(amount_minor), sum(orders), any(currency), "
        "any(creator_id), any(click_id), any(sku), any(quantity), any(basis_minor), any(rate_bps), "
        "any(rate_rule), any(rate_version), any(reason), any(event_id), any(effective_ms) "
        f"FROM {db}.commissions WHERE merchant_id = %(merchant_id)s AND order_id IN %(order_ids)s "
        "GROUP BY order_id, entry_id"
    )


def earnings_commissions(db: str) -> str:
    """Per creator and currency over a day range, from the daily rollup (never the raw ledger). The last
    column, the sum of absolute amounts in Float64, bounds every Int64 sum before it: report.py refuses
    the row when it is so large that those sums may have wrapped."""
    return (
        "SELECT creator_id, currency, sum(orders), "
        "sumIf(amount_minor, status = 'pending'), sumIf(amount_minor, status = 'approved'), "
        "-sumIf(amount_minor, kind = 'reversal'), sum(abs(toFloat64(amount_minor))) "
        f"FROM {db}.commissions_daily WHERE day >= toDate(%(from_day)s) AND day <= toDate(%(to_day)s) "
        "AND (%(creator_id)s = '' OR creator_id = %(creator_id)s) AND creator_id != '' "
        "GROUP BY creator_id, currency ORDER BY creator_id, currency"
    )


def earnings_clicks(db: str) -> str:
    """Billable-looking clicks per creator (not HEAD, not bot) over a day range."""
    return (
        f"SELECT creator_id, count() FROM {db}.clicks "
        "WHERE toDate(ts) >= toDate(%(from_day)s) AND toDate(ts) <= toDate(%(to_day)s) "
        "AND (%(creator_id)s = '' OR creator_id = %(creator_id)s) AND is_head = 0 AND is_bot = 0 "
        "GROUP BY creator_id"
    )


def order_explanation(db: str) -> str:
    """Every ledger row of one order, oldest booking first: the answer to a dispute."""
    return (
        "SELECT entry_id, kind, status, amount_minor, currency, creator_id, click_id, sku, quantity, "
        "basis_minor, rate_bps, rate_rule, rate_version, reason, event_id, effective_ms, booked_ms "
        f"FROM {db}.commissions WHERE merchant_id = %(merchant_id)s AND order_id = %(order_id)s "
        "ORDER BY booked_ms, entry_id"
    )
