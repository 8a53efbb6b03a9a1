-- Commissions per creator and day (of effect: the order, the refund, the approval), kept by ClickHouse.
-- Summing keeps it exact under the append-only ledger: a correction row simply adds to its day.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commissions_daily
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (creator_id, currency, day, merchant_id, kind, status)
AS SELECT
    toDate(effective_at) AS day,
    creator_id,
    currency,
    merchant_id,
    kind,
    status,
    sum(amount_minor) AS amount_minor,
    sum(orders) AS orders
FROM {db}.commissions
GROUP BY day, creator_id, currency, merchant_id, kind, status;
