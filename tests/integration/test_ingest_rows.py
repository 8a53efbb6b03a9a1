"""The rows the ingester stores, column by column, equal what a plain per-click reading of the enrichment
rules gives for the same clicks: the columnar, memoised and overlapped build path (clicks.py) must never
change a stored value. A mixed stream: many user agents (people, previews, crawlers, none, HEAD), IPv4 and
IPv6 prefixes, trusted and malformed country headers, referers good and bad, smart variants, in-app
browsers, repeat visitors, and batches that cross an hour boundary. And for every stream → table decoder
(clicks, links, order events), no integer it admits is one its column cannot hold (such an entry failed
its batch's insert for ever, and blocked the stream behind it)."""

from __future__ import annotations

import threading

import msgspec
import pytest
import redis
from prometheus_client import CollectorRegistry

from attribution.events import RECEIVED_MAX_MS, OrderEventsHandler, order_stream_spec
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.keys import INGEST_GROUP, Keys
from core.links import LINK_EVENT_VERSION
from core.migrate import migrate
from core.rows import ClickRow
from core.settings import Settings
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, Poison, StreamConsumer
from redirector.click import Click, encode_batch
from redirector.ingest.clicks import ClickHandler, IngestClick
from redirector.ingest.enrich import Enricher, referer_host
from redirector.ingest.links import LinkEventHandler
from redirector.ingest.process import stream_specs
from redirector.ingest.unique import UniqueClicks
from tests.chtypes import integer_column, unchecked_integer_columns

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

HOUR_MS = 3_600_000
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 307.0.0.34.111 (iPhone14,5; iOS 17_1; en_US; en; scale=3.00; 1170x2532)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "WhatsApp/2.23.20.0",
    "",
    "   ",
    "curl/8.4.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0 é",
)
PREFIXES = ("81.2.69.0/24", "2a02:c7c:5000::/48", "8.8.8.0/24", "", "not-a-prefix", "2001:db8:1::/48")
COUNTRIES = ("", "DE", "FR", "xx", "")
REFERERS = ("", "https://www.tiktok.com/@c", "http://Instagram.com/p/1", "not a url", "http://[bad")
INAPP = ("", "instagram", "tiktok")


def mixed_clicks(ids: ClickIds, count: int, start_ms: int) -> list[Click]:
    clicks = []
    for i in range(count):
        ts_ms = start_ms + i * 1_301  # ~13 minutes per 600 clicks: batches cross hour boundaries
        clicks.append(
            Click(
                click_id=ids.new(ts_ms),
                ts_ms=ts_ms,
                code=f"link{i % 7}",
                creator_id=f"cr{i % 3}",
                merchant_id="" if i % 4 == 0 else f"m{i % 2}",
                dest_host="shop.example" if i % 5 else "other.example",
                is_head=i % 17 == 0,
                user_agent=AGENTS[(i * 5) % len(AGENTS)],
                referer=REFERERS[i % len(REFERERS)],
                ip_hash=(i * 7919) % 53 + (2**64 - 60 if i % 11 == 0 else 0),
                ip_prefix=PREFIXES[i % len(PREFIXES)],
                country=COUNTRIES[i % len(COUNTRIES)],
                variant=(i % 4) - 1,
                inapp=INAPP[i % len(INAPP)],
            )
        )
    return clicks


def expected_rows(clicks: list[Click], entry_of: dict[str, str]) -> list[tuple]:
    """Click by click, straight from the enrichment rules (no column maps, no batch-level memo)."""
    enricher = Enricher()
    seen: set[tuple] = set()
    rows = []
    for c in clicks:
        traits = enricher.traits(c.user_agent, c.is_head)
        visit = (c.code, c.ip_hash, c.user_agent, c.ts_ms // HOUR_MS)
        unique = int(not traits.is_bot and visit not in seen)
        if unique:
            seen.add(visit)
        rows.append(
            (
                c.click_id, c.ts_ms // 1000, c.ts_ms, c.code, c.creator_id, c.merchant_id, c.dest_host,
                int(c.is_head), int(traits.is_bot), traits.bot_reason, unique,
                enricher.country(c.country, c.ip_prefix), traits.device, traits.browser, traits.os,
                referer_host(c.referer), c.user_agent, c.ip_hash, c.ip_prefix, entry_of[c.click_id],
                c.variant, c.inapp,
            )
        )  # fmt: skip
    return sorted(rows)


def stored_rows(ch: NativeClickHouse) -> list[tuple]:
    columns = ", ".join("toUInt32(ts)" if name == "ts" else name for name in ClickRow.columns())
    return sorted(ch.execute(f"SELECT {columns} FROM {ch.database}.clicks"))


@pytest.mark.parametrize("batch_size", [700, 100_000])
def test_stored_rows_equal_the_rules_click_by_click(
    settings: Settings, redis_client: redis.Redis, clickhouse: NativeClickHouse, batch_size: int
) -> None:
    migrate(clickhouse, log=lambda _line: None)
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)
    clicks = mixed_clicks(ids, 3_000, start_ms=(1_700_000_000_000 // HOUR_MS) * HOUR_MS - 5 * HOUR_MS)
    entry_of = {}
    for start in range(0, len(clicks), 250):
        part = clicks[start : start + 250]
        entry_id = redis_client.xadd(keys.clicks, {"v": b"1", "r": b"t", "s": b"0", "c": encode_batch(part)})
        entry_of.update((c.click_id, entry_id.decode()) for c in part)
    client = redis.Redis.from_url(settings.redis_url)
    config = ConsumerConfig(
        stream=keys.clicks, dead_stream=keys.clicks_dead, group=INGEST_GROUP, consumer="rows",
        batch_size=batch_size, flush_interval_ms=200,
    )  # fmt: skip
    handler = ClickHandler(Enricher(), UniqueClicks(client, keys))
    consumer = StreamConsumer(client, clickhouse, handler, config, StreamMetrics(CollectorRegistry()))
    consumer.ensure_group()
    try:
        assert consumer.run(threading.Event(), once=True) is True
    finally:
        client.close()
    stored = stored_rows(clickhouse)
    expected = expected_rows(clicks, entry_of)
    assert len(stored) == len(expected) == len(clicks)
    for name, index in zip(ClickRow.columns(), range(len(expected[0])), strict=True):
        assert [row[index] for row in stored] == [row[index] for row in expected], name


def test_every_integer_the_click_decoder_takes_fits_its_column(clickhouse) -> None:
    """An integer the decoder let through but the column cannot hold failed the whole batch's insert, for
    ever: a click with `variant` 40,000 (an Int16) blocked the stream behind it. So each integer field of
    the decoded click is bounded within its column's type, read from the migrated table itself (a new
    column or a changed type is checked too, a Nullable one as well: tests/chtypes.py)."""
    migrate(clickhouse, log=lambda _line: None)
    types = _column_types(clickhouse, "clicks")
    checked = []
    for field in msgspec.inspect.type_info(IngestClick).fields:
        info = field.type
        if not isinstance(info, msgspec.inspect.IntType) or field.name not in types:
            continue
        column = integer_column(types[field.name])
        assert column is not None, (field.name, types[field.name])  # an integer into a column of no integer
        low, high = column.low, column.high
        given_low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
        given_high = info.le + 1 if info.le is not None else info.lt
        # msgpack carries no integer outside [-2**63, 2**64): an unsigned 64-bit column needs only ge=0
        assert given_low is not None and given_low >= low, (field.name, types[field.name], info)
        assert (given_high is not None and given_high <= high) or high == 2**64, (field.name, info)
        checked.append(field.name)
    assert {"ts_ms", "ip_hash", "variant"} <= set(checked)


# --- the same class check for every other stream → table decoder ----------------------------------------
def _column_types(clickhouse, table: str) -> dict[str, str]:
    return dict(
        clickhouse.execute(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(table)s",
            {"db": clickhouse.database, "table": table},
        )
    )


def _assert_every_integer_fits(clickhouse, handler, records: list) -> set[str]:
    """Builds the handler's columns for `records` as the insert gets them and checks each integer value
    (array elements too, NULLs left out) against its column's type as the migrated server has it
    (tests/chtypes.py), then inserts them; returns the integer columns checked, which must be every
    integer column of the table."""
    types = _column_types(clickhouse, handler.table)
    checked = set()
    for name, values in zip(handler.columns, handler.build(records), strict=True):
        column = integer_column(types[name])
        if column is None:
            continue
        outside = [v for v in column.values(values) if not column.low <= v < column.high]
        assert not outside, (handler.table, name, types[name], outside[:3])
        checked.add(name)
    assert not unchecked_integer_columns(types, checked), unchecked_integer_columns(types, checked)
    # and the server takes them: the bounds above are its own
    clickhouse.insert(handler.table, handler.columns, handler.build(records))
    return checked


ORDER_BODY = {
    "type": "order.created",
    "data": {
        "order_id": "A-1",
        "currency": "EUR",
        "occurred_at": "2026-11-27T10:00:00.123Z",
        "items": [{"sku": "S", "unit_price_minor": 5, "quantity": 1}],
    },
}
ORDER_ENTRY = {b"v": b"1", b"m": b"m1", b"w": b"w", b"t": b"1764237600500"}
# The integers an order entry carries, each at and past every bound its columns have (item_unit_price_minor
# Int64, item_quantity UInt32, occurred_at DateTime, occurred_ms and received_ms UInt64), and past the
# decoder's own limits.
ORDER_EDGES = {
    "unit_price_minor": [-(2**63) - 1, -1, 0, 10**12, 10**12 + 1, 2**63 - 1, 2**63, 2**64],
    "quantity": [-1, 0, 1, 10**6, 10**6 + 1, 2**32 - 1, 2**32, 2**64],
    "occurred_at": [
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00+00:01",
        "1969-12-31T23:59:59.999Z",
        "2104-12-31T23:59:59.999999Z",
        "2104-12-31T23:59:59-14:00",
        "2106-02-07T06:28:15Z",
        "2106-02-07T06:28:16Z",
        "9999-12-31T23:59:59Z",
    ],
    "received_ms": [
        -1,
        0,
        2**32 * 1000,
        RECEIVED_MAX_MS - 1,
        RECEIVED_MAX_MS,
        2**63,
        2**64 - 1,
        2**64,
        2**65,
        "9" * 5000,
    ],
}


def _order_entry(field: str, value) -> dict[bytes, bytes]:
    body = msgspec.json.decode(msgspec.json.encode(ORDER_BODY))
    if field in ("unit_price_minor", "quantity"):
        body["data"]["items"][0][field] = value
    elif field == "occurred_at":
        body["data"]["occurred_at"] = value
    entry = {**ORDER_ENTRY, b"b": msgspec.json.encode(body)}
    if field == "received_ms":
        entry[b"t"] = str(value).encode()
    return entry


def test_every_integer_the_order_decoder_takes_fits_its_column(clickhouse) -> None:
    """`test_every_integer_the_click_decoder_takes_fits_its_column` for the order stream: each integer an
    entry carries, at and past every bound, either is dead-lettered (Poison) or builds into columns whose
    every value fits the migrated `order_events` type. A received time past UInt64 once failed its
    batch's insert for ever."""

    migrate(clickhouse, log=lambda _line: None)
    handler = OrderEventsHandler()
    taken, records = [], []
    for field, values in ORDER_EDGES.items():
        for value in values:
            try:
                records += handler.decode("1-0", _order_entry(field, value))
            except Poison:
                continue
            taken.append((field, value))
    assert _assert_every_integer_fits(clickhouse, handler, records) == {
        "occurred_at", "occurred_ms", "received_ms", "ingested_ms", "item_unit_price_minor", "item_quantity",
    }  # fmt: skip
    # not vacuous: the largest values the decoder admits reached the columns
    assert {
        ("unit_price_minor", 10**12),
        ("quantity", 10**6),
        ("occurred_at", "2104-12-31T23:59:59.999999Z"),
        ("received_ms", RECEIVED_MAX_MS - 1),  # 2105: no time past it, whatever UInt64 holds
    } <= set(taken)


LINK_EVENT = {
    "code": "abc",
    "url": "https://shop.example/",
    "creator_id": "alice",
    "merchant_id": "",
    "host": "shop.example",
    "created_at_ms": 1_700_000_000_000,
    "disabled": False,
    "updated_at_ms": 1_700_000_000_000,
}
# created_at (DateTime) is created_at_ms // 1000; both times are UInt64 columns too.
LINK_EDGES = {
    "created_at_ms": [-1, 0, 2**32 * 1000 - 1, 2**32 * 1000, 2**63, 2**64 - 1],
    "updated_at_ms": [-1, 0, 2**32 * 1000 - 1, 2**32 * 1000, 2**63, 2**64 - 1],
    "disabled": [True, False, 0, 1, 2, 256],
}


def test_every_integer_the_link_event_decoder_takes_fits_its_column(clickhouse) -> None:
    """The same check for the link-event stream into `links`."""

    migrate(clickhouse, log=lambda _line: None)
    handler = LinkEventHandler()
    taken, records = [], []
    for field, values in LINK_EDGES.items():
        for value in values:
            entry = {b"v": LINK_EVENT_VERSION, b"l": msgspec.msgpack.encode({**LINK_EVENT, field: value})}
            try:
                records += handler.decode("1-0", entry)
            except Poison:
                continue
            taken.append((field, value))
    checked = _assert_every_integer_fits(clickhouse, handler, records)
    assert checked == {"created_at", "created_at_ms", "disabled", "updated_at_ms"}
    assert {("created_at_ms", 2**32 * 1000 - 1), ("updated_at_ms", 2**32 * 1000 - 1)} <= set(taken)


def test_every_stream_table_has_its_integer_check(settings: Settings, redis_client: redis.Redis) -> None:
    """A new stream → table decoder gets its own check above: the tables the ingester's streams fill are
    exactly the three checked here."""
    specs = [*stream_specs(settings), order_stream_spec(Keys.of(settings))]
    tables = set()
    for spec in specs:
        handler = spec.make_handler(redis_client)
        tables.add(handler.table)
        handler.close()
    assert tables == {"clicks", "links", "order_events"}
