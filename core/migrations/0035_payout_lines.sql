-- Which ledger rows each payout pays (attribution/payouts.py): one row with sign +1 per commissions row
-- (identified by order_id, entry_id, run_id, creator_id, currency) when the payout is created, and the
-- same row again with sign -1 when the payout fails (the rows become payable again). A commissions row is
-- paid by a payout while sum(sign) over its identity is positive; the batch skips linked rows, under the
-- ledger's writer lock (two rows share an identity only when a run moved an order's click alone: the old
-- click's reversal and the new click's row, linked together, of opposite amounts). The statement of a
-- payout is its sign +1 rows; sum(amount_minor) is its amount.
CREATE TABLE IF NOT EXISTS {db}.payout_lines
(
    merchant_id    String,
    payout_id      String,
    batch_id       String,
    creator_id     String,
    currency       String,
    order_id       String,
    entry_id       String,
    run_id         String,
    sign           Int8,
    kind           String,
    sku            String,
    quantity       UInt32,
    basis_minor    Int64,
    rate_bps       UInt32,
    amount_minor   Int64,
    attributed_by  String,
    booked_ms      UInt64,
    created_at     DateTime,
    created_ms     UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (merchant_id, payout_id, order_id, entry_id, run_id);
