-- The same sums sorted by creator: "a creator's clicks over a month" and a creator's top links read one
-- range of this table instead of the whole per-link rollup. Read with sum(...) GROUP BY.
CREATE TABLE IF NOT EXISTS {db}.creator_clicks_daily
(
    creator_id     String,
    day            Date,
    code           String,
    merchant_id    String,
    clicks         UInt64,
    unique_clicks  UInt64,
    bot_clicks     UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (creator_id, day, code, merchant_id);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.creator_clicks_daily_mv TO {db}.creator_clicks_daily AS
SELECT
    creator_id, toDate(ts) AS day, code, merchant_id,
    count() AS clicks, sum(is_unique) AS unique_clicks, sum(is_bot) AS bot_clicks
FROM {db}.clicks
GROUP BY creator_id, day, code, merchant_id;
