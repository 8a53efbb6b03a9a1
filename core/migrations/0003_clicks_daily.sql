-- Clicks per link and day, kept by ClickHouse itself: every insert into clicks adds its per-block sums
-- here, and background merges add rows up. Always read with sum(...) GROUP BY (rows of one key may not
-- be merged yet). Sorted by code: a link's daily series and its totals read one small range.
-- clicks counts every recorded click (bots and HEAD included); unique_clicks and bot_clicks are subsets.
CREATE TABLE IF NOT EXISTS {db}.clicks_daily
(
    day            Date,
    code           String,
    creator_id     String,
    merchant_id    String,
    clicks         UInt64,
    unique_clicks  UInt64,
    bot_clicks     UInt64,
    head_clicks    UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (code, day, creator_id, merchant_id);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_daily_mv TO {db}.clicks_daily AS
SELECT
    toDate(ts) AS day, code, creator_id, merchant_id,
    count() AS clicks, sum(is_unique) AS unique_clicks, sum(is_bot) AS bot_clicks, sum(is_head) AS head_clicks
FROM {db}.clicks
GROUP BY day, code, creator_id, merchant_id;
