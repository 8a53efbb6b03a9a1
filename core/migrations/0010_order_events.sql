-- Every accepted order webhook event, written by the order-event consumer (attribution/events.py), once per
-- (merchant_id, webhook_id). ReplacingMergeTree is a second safety net only: the consumer checks before it
-- inserts, and the attributor folds events by webhook_id, so a duplicate row could never be summed.
-- Items are parallel arrays (18.16 has no Nested JSON type): item i is (item_sku[i], item_category[i], ...).
CREATE TABLE IF NOT EXISTS {db}.order_events
(
    merchant_id            String,
    webhook_id             String,
    event_type             String,
    order_id               String,
    click_id               String,
    currency               String,
    occurred_at            DateTime,
    occurred_ms            UInt64,
    received_ms            UInt64,
    ingested_ms            UInt64,
    item_sku               Array(String),
    item_category          Array(String),
    item_unit_price_minor  Array(Int64),
    item_quantity          Array(UInt32),
    body_sha256            String,
    stream_entry           String
)
ENGINE = ReplacingMergeTree(ingested_ms)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (merchant_id, order_id, webhook_id);
