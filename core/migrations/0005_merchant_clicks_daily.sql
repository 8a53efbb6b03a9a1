-- The same sums sorted by merchant: "top links of a merchant" over a period reads one range. Clicks on
-- links no merchant owns yet sit under merchant_id ''. Read with sum(...) GROUP BY.
CREATE TABLE IF NOT EXISTS {db}.merchant_clicks_daily
(
    merchant_id    String,
    day            Date,
    code           String,
    creator_id     String,
    clicks         UInt64,
    unique_clicks  UInt64,
    bot_clicks     UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (merchant_id, day, code, creator_id);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.merchant_clicks_daily_mv TO {db}.merchant_clicks_daily AS
SELECT
    merchant_id, toDate(ts) AS day, code, creator_id,
    count() AS clicks, sum(is_unique) AS unique_clicks, sum(is_bot) AS bot_clicks
FROM {db}.clicks
GROUP BY merchant_id, day, code, creator_id;
