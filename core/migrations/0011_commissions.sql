-- The commission ledger: append-only, one row per booked difference (see attribution/ledger.py).
-- sum(amount_minor) is the balance without FINAL; GROUP BY status splits it into pending and approved
-- (approval is booked as a pending -> approved transfer pair of kind 'approval'). Every row explains
-- itself: rate_bps, rate_rule (creator/sku/category/default), rate_version, basis_minor, reason.
-- entry_id is deterministic per order, so the attributor appends only what differs from the stored net.
CREATE TABLE IF NOT EXISTS {db}.commissions
(
    merchant_id    String,
    order_id       String,
    entry_id       String,
    kind           String,
    status         String,
    amount_minor   Int64,
    orders         Int8,
    currency       String,
    creator_id     String,
    click_id       String,
    sku            String,
    quantity       UInt32,
    basis_minor    Int64,
    rate_bps       UInt32,
    rate_rule      String,
    rate_version   UInt32,
    reason         String,
    event_id       String,
    effective_at   DateTime,
    effective_ms   UInt64,
    booked_ms      UInt64,
    run_id         String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(effective_at)
ORDER BY (merchant_id, order_id, entry_id);
