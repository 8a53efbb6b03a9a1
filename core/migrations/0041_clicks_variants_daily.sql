-- Clicks per link, variant and day, for A/B tests of smart links (clicks of links without variants are
-- left out). Kept by ClickHouse from every insert into clicks; always read with sum(...) GROUP BY.
-- Conversion per variant joins clicks (variant, click_id) with commissions (click_id): see the README.
CREATE TABLE IF NOT EXISTS {db}.clicks_variants_daily
(
    code           String,
    day            Date,
    variant        Int16,
    clicks         UInt64,
    unique_clicks  UInt64,
    bot_clicks     UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (code, day, variant);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_variants_daily_mv TO {db}.clicks_variants_daily AS
SELECT
    code, toDate(ts) AS day, variant,
    count() AS clicks, sum(is_unique) AS unique_clicks, sum(is_bot) AS bot_clicks
FROM {db}.clicks
WHERE variant >= 0
GROUP BY code, day, variant;
