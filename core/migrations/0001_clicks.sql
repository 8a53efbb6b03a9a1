-- One row per recorded click, written only by the ingester (exactly once per click id: see
-- clicktrail/streams.py). merchant_id is '' while no merchant owns the destination host. No raw IP:
-- ip_hash is a keyed hash, ip_prefix the /24 (IPv4) or /48 (IPv6) network.
-- Bots and link previews are kept and flagged (is_bot, bot_reason), never dropped, so numbers can be
-- corrected later; is_unique is 1 for the first human click of an (ip_hash, user agent) on a link in a
-- clock hour (UTC), 0 for repeats, bots and HEAD requests.
-- Sort key: a day, then a creator: "a creator's clicks over a month" reads 30 small ranges, and the
-- attributor's lookup of a click id (whose time it knows) reads one day. Monthly partitions keep the
-- part count low at this volume and let old months be dropped whole.
-- stream_entry is the Redis stream entry the click came in (for tracing an ingestion back to Redis).
CREATE TABLE IF NOT EXISTS {db}.clicks
(
    click_id      String,
    ts            DateTime,
    ts_ms         UInt64,
    code          String,
    creator_id    String,
    merchant_id   String,
    dest_host     String,
    is_head       UInt8,
    is_bot        UInt8,
    bot_reason    String,
    is_unique     UInt8,
    country       String,
    device        String,
    browser       String,
    os            String,
    referer_host  String,
    user_agent    String,
    ip_hash       UInt64,
    ip_prefix     String,
    stream_entry  String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), creator_id, code, ts);
