"""The meaning of every ClickHouse column, one line each, for the schema reference (docs/schema.md, built by
core/schemadoc.py). Tables are described by the comment above their CREATE in the migration; columns here,
because the migrations already applied are never edited.

A new migration may instead end a column's line with `-- its meaning` (or put a `--` comment right above an
`ALTER TABLE ... ADD COLUMN`); a meaning there wins over this table. A column with no meaning anywhere
fails the build (tests/integration/test_schemadoc_current.py) until one is given and the reference is
regenerated.
"""

from __future__ import annotations

# Columns of the same name and sense in several tables (chiefly the rollups); a table's own entry wins.
SHARED: dict[str, str] = {
    "day": "UTC day of the click (`toDate(ts)`)",
    "code": "the short link's code",
    "creator_id": "the creator who made the link",
    "merchant_id": "the merchant that owns the destination host; `''` while none does",
    "clicks": "clicks recorded, bots and HEAD requests included (`sum()` it)",
    "unique_clicks": "first human clicks of a visitor on the link in a clock hour (`sum()` it)",
    "bot_clicks": "clicks flagged as bots or link previews, HEAD included (`sum()` it)",
    "head_clicks": "HEAD requests (link checkers; never billable) (`sum()` it)",
    "country": "ISO 3166 country code of the viewer (trusted header, else offline lookup); `''` unknown",
    "device": "device class: mobile, tablet, desktop, bot or other",
    "referer_host": "host of the Referer header; `''` when none was sent",
    "stream_entry": "the Redis stream entry the row came in (traces an ingestion back to Redis)",
}

COLUMNS: dict[str, dict[str, str]] = {
    "clicks": {
        "click_id": "the click id sent to the merchant (30 URL-safe characters; keyed MAC; embeds the time)",
        "ts": "when the redirect was served (UTC, seconds)",
        "ts_ms": "the same in milliseconds since the epoch",
        "dest_host": "host of the destination URL (lower-case)",
        "is_head": "1 for a HEAD request (recorded, never billable)",
        "is_bot": "1 for a bot or link-preview fetcher (kept, never dropped)",
        "bot_reason": "why `is_bot` is 1: `preview:<app>`, `crawler:<pattern>`, `no_user_agent` or `head`",
        "is_unique": "1 for the first human click of an (ip_hash, user agent) on the link in a clock hour",
        "browser": "browser family from ua-parser (uap-core names, e.g. `Mobile Safari`)",
        "os": "operating system family from ua-parser (e.g. `iOS`, `Mac OS X`)",
        "user_agent": "the User-Agent header as sent",
        "ip_hash": "keyed 64-bit hash of the client IP (the IP itself is never stored)",
        "ip_prefix": "the client's network: /24 for IPv4, /48 for IPv6",
    },
    "links": {
        "url": "the destination URL (stored without any click-id parameter)",
        "merchant_id": "the merchant that owns the destination host at this version; `''` none",
        "host": "host of the destination URL",
        "created_at": "when the link was created (UTC, seconds)",
        "created_at_ms": "the same in milliseconds",
        "disabled": "1 when the link is disabled (its code answers 410)",
        "updated_at_ms": "when this version was written (ms): the version column of ReplacingMergeTree",
    },
    "order_events": {
        "merchant_id": "the merchant whose webhook delivered the event",
        "webhook_id": "the `webhook-id` header: unique per delivery, the idempotency key",
        "event_type": "`order.created`, `order.refunded` or `order.cancelled`",
        "order_id": "the merchant's order id",
        "click_id": "the click id the merchant's page received (may be empty or foreign)",
        "currency": "ISO 4217 code of the amounts",
        "occurred_at": "when the event happened at the merchant (UTC, seconds)",
        "occurred_ms": "the same in milliseconds: events of an order are ordered by it, then webhook_id",
        "received_ms": "when clicktrail accepted the webhook (ms)",
        "ingested_ms": "when the row was written to ClickHouse (ms): the attributor's cursor",
        "item_sku": "items' SKUs (parallel arrays: item i is element i of each item_ column)",
        "item_category": "items' categories (`''` none)",
        "item_unit_price_minor": "items' unit prices in minor units (cents)",
        "item_quantity": "items' quantities (refunded quantities for `order.refunded`)",
        "body_sha256": "SHA-256 of the webhook body as received",
    },
    "commissions": {
        "merchant_id": "the merchant of the order",
        "order_id": "the merchant's order id",
        "entry_id": "deterministic id within the order (`acc:<line>`, `rev:<webhook>:<line>`, ...)",
        "kind": "accrual, reversal, approval (pending to approved transfer), none (earns nothing) or flag",
        "status": "pending or approved: `sum(amount_minor) GROUP BY status` gives the balances",
        "amount_minor": "signed commission in minor units; the balance is `sum(amount_minor)`",
        "orders": "+1 on an order's first accrual line: `sum(orders)` counts credited orders",
        "currency": "ISO 4217 code of the amount (the merchant's currency)",
        "creator_id": "the creator credited; `''` when the order earns nothing",
        "click_id": "the click the order was attributed to (as the merchant sent it)",
        "sku": "the order line's SKU; `''` for order-level rows",
        "quantity": "units of the line this row covers",
        "basis_minor": "the amount the rate was applied to (line price times quantity), minor units",
        "rate_bps": "the commission rate applied, in basis points (1/100 %)",
        "rate_rule": "which rate applied: creator, sku, category or default",
        "rate_version": "the merchant's rate version in force when the order happened",
        "reason": "why an order earns nothing or was flagged (no_click, bot, expired, ...), or why a row "
        "moved or was cut (credit_moved, rejected, approved, refund_capped); `''` otherwise",
        "event_id": "the webhook_id of the event that caused the row",
        "effective_at": "when the row takes effect: the order, refund or approval time (UTC, seconds)",
        "effective_ms": "the same in milliseconds",
        "booked_ms": "when the attributor appended the row (ms)",
        "run_id": "the attributor run that appended it",
    },
    "commissions_daily": {
        "day": "UTC day the rows take effect (`toDate(effective_at)`)",
        "merchant_id": "the merchant of the orders",
        "creator_id": "the creator credited",
        "currency": "ISO 4217 code of the amounts",
        "kind": "ledger row kind (accrual, reversal, approval, none, flag)",
        "status": "pending or approved",
        "amount_minor": "net commission in minor units (`sum()` it)",
        "orders": "credited orders (`sum()` it)",
    },
    "clicks_variants_daily": {
        "variant": "index of the smart link's variant the clicks were sent to (links with variants only)",
    },
    "payout_lines": {
        "payout_id": "the payout that pays (or, with sign -1, releases) this ledger row",
        "batch_id": "the payout batch (one per merchant and `until`)",
        "currency": "ISO 4217 currency of the payout and of the row",
        "order_id": "order of the ledger row paid (with entry_id, run_id, creator_id and currency: the row's "
        "identity)",
        "entry_id": "entry id of the ledger row paid",
        "run_id": "run that booked the ledger row paid",
        "sign": "+1 when the payout takes the row, -1 when a failed payout releases it (`sum()` it)",
        "kind": "kind of the ledger row paid (accrual, reversal, approval, ...)",
        "sku": "product of the ledger row",
        "quantity": "units of the ledger row",
        "basis_minor": "price x quantity the commission was computed on, minor units",
        "rate_bps": "rate of the ledger row, basis points",
        "amount_minor": "amount of the ledger row paid, minor units (`sum()` with sign for a payout's total)",
        "attributed_by": "how the order was credited: click, code, or ''",
        "booked_ms": "when the ledger row was booked (ms since the epoch)",
        "created_at": "when the payout took the row (UTC, seconds)",
        "created_ms": "the same in milliseconds",
    },
    "schema_migrations": {
        "version": "number of an applied migration (core/migrations/NNNN_name.sql)",
        "name": "its name",
        "applied_at": "when it was applied (UTC)",
    },
}

# The migrator's own table, created by core/migrate.py rather than by a migration.
STATE_TABLE_NOTE = (
    "The migrations applied to this database, one row each, written by `clicktrail migrate` "
    "(core/migrate.py) after all of a migration's statements ran."
)

# Example queries for analysts, run on 18.16 and chdb by tests/integration/test_schemadoc_current.py.
EXAMPLES: list[tuple[str, str]] = [
    (
        "A creator's clicks over a month, per day (reads the rollup, never raw clicks)",
        "SELECT day, sum(clicks), sum(unique_clicks), sum(bot_clicks)\n"
        "FROM clicktrail.creator_clicks_daily\n"
        "WHERE creator_id = 'alice' AND day >= toDate('2026-11-01') AND day < toDate('2026-12-01')\n"
        "GROUP BY day ORDER BY day",
    ),
    (
        "A link's daily series",
        "SELECT day, sum(clicks), sum(unique_clicks) FROM clicktrail.clicks_daily\n"
        "WHERE code = 'Xy3kP9aQ' GROUP BY day ORDER BY day",
    ),
    (
        "Top links of a merchant over the last 30 days, human clicks",
        "SELECT code, any(creator_id), sum(clicks) - sum(bot_clicks) AS human\n"
        "FROM clicktrail.merchant_clicks_daily\n"
        "WHERE merchant_id = 'brand1' AND day >= today() - 30\n"
        "GROUP BY code ORDER BY human DESC LIMIT 10",
    ),
    (
        "Where a link's viewers come from",
        "SELECT country, sum(clicks) - sum(bot_clicks) AS human FROM clicktrail.clicks_daily_dims\n"
        "WHERE code = 'Xy3kP9aQ' GROUP BY country ORDER BY human DESC",
    ),
    (
        "Devices and browsers of a creator's human clicks this week (raw clicks, bounded by time)",
        "SELECT device, browser, count() AS clicks FROM clicktrail.clicks\n"
        "WHERE creator_id = 'alice' AND ts >= now() - 7 * 86400 AND is_bot = 0\n"
        "GROUP BY device, browser ORDER BY clicks DESC LIMIT 20",
    ),
    (
        "Bots seen today, by reason",
        "SELECT bot_reason, count() FROM clicktrail.clicks\n"
        "WHERE ts >= now() - 86400 AND is_bot = 1 GROUP BY bot_reason",
    ),
    (
        "A creator's balance per currency and status",
        "SELECT currency, status, sum(amount_minor) FROM clicktrail.commissions\n"
        "WHERE creator_id = 'alice' GROUP BY currency, status",
    ),
    (
        "A creator's commission per day and status (the rollup)",
        "SELECT day, currency, status, sum(amount_minor), sum(orders) FROM clicktrail.commissions_daily\n"
        "WHERE creator_id = 'alice' GROUP BY day, currency, status ORDER BY day",
    ),
    (
        "A dispute: everything booked for one order, with its explanation",
        "SELECT booked_ms, kind, status, amount_minor, currency, sku, quantity, basis_minor, rate_bps,\n"
        "       rate_rule, rate_version, reason, click_id\n"
        "FROM clicktrail.commissions WHERE merchant_id = 'brand1' AND order_id = 'A-1001'\n"
        "ORDER BY booked_ms, entry_id",
    ),
    (
        "Why orders earned nothing this month (each order's latest booking explains it)",
        "SELECT last_reason, count() FROM (\n"
        "    SELECT merchant_id, order_id, argMax(kind, booked_ms) AS last_kind,\n"
        "           argMax(reason, booked_ms) AS last_reason\n"
        "    FROM clicktrail.commissions WHERE effective_at >= toStartOfMonth(now())\n"
        "    GROUP BY merchant_id, order_id)\n"
        "WHERE last_kind IN ('none', 'flag') GROUP BY last_reason ORDER BY count() DESC",
    ),
    (
        "An order's events in the order they count",
        "SELECT occurred_ms, webhook_id, event_type, item_sku, item_quantity FROM clicktrail.order_events\n"
        "WHERE merchant_id = 'brand1' AND order_id = 'A-1001' ORDER BY occurred_ms, webhook_id",
    ),
    (
        "A creator's current links",
        "SELECT code, url, merchant_id, disabled FROM clicktrail.links FINAL WHERE creator_id = 'alice'",
    ),
]
