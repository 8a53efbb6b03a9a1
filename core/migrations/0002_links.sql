-- Mirror of the Redis link store, for joins. Every change of a link (creation, disable, a merchant
-- claiming its host) is one row; ReplacingMergeTree keeps the latest version (highest updated_at_ms) per
-- code only after a background merge, so read the current state with FINAL
-- (`SELECT ... FROM clicktrail.links FINAL`) or with argMax(column, updated_at_ms) ... GROUP BY code.
CREATE TABLE IF NOT EXISTS {db}.links
(
    code           String,
    url            String,
    creator_id     String,
    merchant_id    String,
    host           String,
    created_at     DateTime,
    created_at_ms  UInt64,
    disabled       UInt8,
    updated_at_ms  UInt64
)
ENGINE = ReplacingMergeTree(updated_at_ms)
ORDER BY code;
