-- Clicks per link and day broken down by country, device class and referer host: the audience panels of
-- a dashboard without scanning raw clicks. Read with sum(...) GROUP BY the dimensions you show.
CREATE TABLE IF NOT EXISTS {db}.clicks_daily_dims
(
    code           String,
    day            Date,
    country        String,
    device         String,
    referer_host   String,
    clicks         UInt64,
    unique_clicks  UInt64,
    bot_clicks     UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (code, day, country, device, referer_host);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_daily_dims_mv TO {db}.clicks_daily_dims AS
SELECT
    code, toDate(ts) AS day, country, device, referer_host,
    count() AS clicks, sum(is_unique) AS unique_clicks, sum(is_bot) AS bot_clicks
FROM {db}.clicks
GROUP BY code, day, country, device, referer_host;
