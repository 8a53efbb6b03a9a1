"""The ingester against the real Redis and ClickHouse 18.16: exactly N rows for N recorded clicks, exact
rollups and unique flags, dead letters, several consumers, a consumer that died, ClickHouse down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec
import pytest
import redis
from prometheus_client import CollectorRegistry

from core import queries
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.keys import INGEST_GROUP, Keys
from core.migrate import migrate
from core.settings import Settings
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer
from redirector.click import Click, encode_batch
from redirector.ingest.clicks import ClickHandler
from redirector.ingest.enrich import Enricher
from redirector.ingest.links import LinkEventHandler
from redirector.ingest.unique import UniqueClicks
from tests.conftest import free_port

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Version/17.1 Mobile/15E148 Safari/604.1"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36"
PREVIEW = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
HOUR_MS = 3_600_000


class Crash(BaseException):
    """Stands in for a process dying at a checkpoint (in-process variant; the SIGKILL tests are separate)."""


def make_clicks(ids: ClickIds, count: int, start_ms: int, step_ms: int = 7) -> list[Click]:
    """A deterministic mix: 5 links, 40 visitors, a preview fetcher every 10th click, HEAD every 25th."""
    clicks = []
    for i in range(count):
        ts_ms = start_ms + i * step_ms
        agent = PREVIEW if i % 10 == 3 else (PHONE if i % 2 else DESKTOP)
        clicks.append(
            Click(
                click_id=ids.new(ts_ms),
                ts_ms=ts_ms,
                code=f"link{i % 5}",
                creator_id=f"cr{i % 5 % 2}",
                merchant_id="m1" if i % 5 else "",
                dest_host="shop.example",
                is_head=i % 25 == 0,
                user_agent=agent,
                referer="https://www.tiktok.com/@c",
                ip_hash=1000 + i % 40,
                ip_prefix="81.2.69.0/24",
                country="" if i % 3 else "DE",
            )
        )
    return clicks


def expected_unique(clicks: list[Click]) -> int:
    """First human click per (link, ip_hash, user agent, clock hour)."""
    enricher = Enricher()
    seen = set()
    for c in clicks:
        if not enricher.traits(c.user_agent, c.is_head).is_bot:
            seen.add((c.code, c.ip_hash, c.user_agent, c.ts_ms // HOUR_MS))
    return len(seen)


def fill(client: redis.Redis, keys: Keys, clicks: list[Click], per_entry: int = 100) -> None:
    with client.pipeline(transaction=False) as pipe:
        for seq, start in enumerate(range(0, len(clicks), per_entry)):
            batch = encode_batch(clicks[start : start + per_entry])
            pipe.xadd(keys.clicks, {"v": b"1", "r": b"test-recorder", "s": str(seq).encode(), "c": batch})
        pipe.execute()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_prefix)


@pytest.fixture
def ids(settings: Settings) -> ClickIds:
    return ClickIds(settings.secret_bytes)


@pytest.fixture
def ch(clickhouse: NativeClickHouse) -> NativeClickHouse:
    migrate(clickhouse, log=lambda _line: None)
    return clickhouse


@pytest.fixture
def consumer_factory(settings: Settings, keys: Keys, redis_client: redis.Redis, ch: NativeClickHouse):
    made: list[tuple[redis.Redis, NativeClickHouse]] = []

    def make(
        name: str = "c1",
        *,
        backend: NativeClickHouse | None = None,
        checkpoint: Callable[[str], None] | None = None,
        registry: CollectorRegistry | None = None,
        metrics: StreamMetrics | None = None,
        links: bool = False,
        **config: object,
    ) -> StreamConsumer:
        client = redis.Redis.from_url(settings.redis_url)
        own = backend or NativeClickHouse(settings.clickhouse_url)
        made.append((client, own))
        handler = LinkEventHandler() if links else ClickHandler(Enricher(), UniqueClicks(client, keys))
        cfg = ConsumerConfig(
            stream=keys.link_events if links else keys.clicks,
            dead_stream=keys.link_events_dead if links else keys.clicks_dead,
            group=INGEST_GROUP,
            consumer=name,
            batch_size=config.pop("batch_size", 1_000),
            flush_interval_ms=config.pop("flush_interval_ms", 200),
            claim_idle_ms=config.pop("claim_idle_ms", 60_000),
            insert_timeout_s=config.pop("insert_timeout_s", 20.0),
            retain_ms=config.pop("retain_ms", 0),
        )
        metrics = metrics or StreamMetrics(registry or CollectorRegistry())
        consumer = StreamConsumer(
            client, own, handler, cfg, metrics, checkpoint=checkpoint or (lambda _p: None)
        )
        consumer.ensure_group()
        return consumer

    yield make
    for client, backend in made:
        client.close()
        backend.close()


def drain(consumer: StreamConsumer) -> bool:
    return consumer.run(threading.Event(), once=True)


def assert_exact(ch: NativeClickHouse, clicks: list[Click]) -> None:
    stored = {row[0] for row in ch.execute(f"SELECT click_id FROM {ch.database}.clicks")}
    assert queries.click_count(ch) == len(clicks), "a click stored twice or lost"
    assert stored == {c.click_id for c in clicks}
    totals = queries.rollup_totals(ch)
    assert len(set(totals.values())) == 1, totals  # every rollup agrees with the raw rows
    assert totals["clicks"][1] == expected_unique(clicks)


def test_n_clicks_become_n_rows(redis_client, keys, ids, ch, consumer_factory) -> None:
    clicks = make_clicks(ids, 3_000, start_ms=int(time.time() * 1000) - HOUR_MS)
    fill(redis_client, keys, clicks)
    registry = CollectorRegistry()
    assert drain(consumer_factory(registry=registry)) is True
    assert_exact(ch, clicks)
    bots = ch.execute(
        f"SELECT bot_reason, count() FROM {ch.database}.clicks WHERE is_bot GROUP BY bot_reason"
    )
    assert dict(bots) == {"preview:facebook": 300, "head": 120}
    # Everything acked and trimmed; lag back to zero.
    assert redis_client.xlen(keys.clicks) == 0
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] == 0
    assert (
        registry.get_sample_value(
            "clicktrail_stream_records_total", {"stream": "clicks", "outcome": "inserted"}
        )
        == 3000
    )
    assert registry.get_sample_value("clicktrail_stream_lag_entries", {"stream": "clicks"}) == 0


def test_a_stopped_consumer_leaves_no_flag_thread(redis_client, keys, ids, ch, consumer_factory) -> None:
    """Shutdown in order: the last batch is written, then the handler's unique-flag thread ends."""
    fill(redis_client, keys, make_clicks(ids, 50, start_ms=int(time.time() * 1000) - HOUR_MS))
    before = {t for t in threading.enumerate() if t.name.startswith("unique-clicks")}
    assert drain(consumer_factory()) is True
    assert [t for t in threading.enumerate() if t.name.startswith("unique-clicks") and t not in before] == []


class _FlagCallLost(UniqueClicks):
    """The unique-flag script call whose reply is lost once (the first call): a dropped connection."""

    calls = 0

    def first_in_hour(self, *args):
        self.calls += 1
        if self.calls == 1:
            raise redis.ConnectionError("flag call lost")
        return super().first_in_hour(*args)


def test_a_failed_flag_call_is_counted_once_and_every_flag_is_right(
    settings, redis_client, keys, ids, ch
) -> None:
    """The first batch's flag call fails while the next batch is being read: that failure is counted
    once (the next batch's build raised it again, a second count), nothing is written twice, and each
    visitor's first click on a link in an hour is the one flagged unique."""
    fill(redis_client, keys, make_clicks(ids, 3_000, start_ms=int(time.time() * 1000) - HOUR_MS))
    client = redis.Redis.from_url(settings.redis_url)
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    config = ConsumerConfig(stream=keys.clicks, dead_stream=keys.clicks_dead, group=INGEST_GROUP,
                            consumer="c1", batch_size=1_000, flush_interval_ms=200)  # fmt: skip
    handler = ClickHandler(Enricher(), _FlagCallLost(client, keys))
    try:
        consumer = StreamConsumer(client, ch, handler, config, metrics)
        consumer.ensure_group()
        assert consumer.run(threading.Event(), once=True) is False  # ends at the error
        handler = ClickHandler(Enricher(), UniqueClicks(client, keys))  # the first one was closed
        consumer = StreamConsumer(client, ch, handler, config, metrics)
        assert consumer.run(threading.Event(), once=True) is True
    finally:
        client.close()
    errors = registry.get_sample_value(
        "clicktrail_stream_errors_total", {"stream": "clicks", "kind": "redis"}
    )
    assert errors == 1
    assert queries.click_count(ch) == 3_000
    assert len(set(ch.execute(f"SELECT click_id FROM {ch.database}.clicks"))) == 3_000
    wrong = ch.execute(
        "SELECT count() FROM (SELECT argMin(is_unique, ts_ms) AS first, sum(is_unique) AS flagged "
        f"FROM {ch.database}.clicks WHERE NOT is_bot "
        "GROUP BY code, ip_hash, user_agent, toStartOfHour(ts)) WHERE first != 1 OR flagged != 1"
    )
    assert wrong == [(0,)]


def test_unique_script_edges(redis_client, keys, ids) -> None:
    """The unique-click script on its own: first click wins within one call and across calls, a replayed
    click keeps its answer, a batch across an hour boundary keeps its order, and a call far larger than
    one script chunk, all in one shard (one visitor), stays under Lua's unpack limit."""
    unique = UniqueClicks(redis_client, keys)
    hour_ms = (int(time.time() * 1000) // HOUR_MS - 1) * HOUR_MS
    now_s = int(time.time())

    def flags(clicks: list[tuple[str, int, int, str]]) -> list[int]:
        columns = list(zip(*clicks, strict=True))
        return unique.first_in_hour(*columns, now_s)

    a1, a2, b1 = ids.new(hour_ms + 1), ids.new(hour_ms + 2), ids.new(hour_ms + 3)
    c1 = ids.new(hour_ms + HOUR_MS + 1)
    batch = [
        ("link0", hour_ms + 1, 7, PHONE, a1),
        ("link0", hour_ms + HOUR_MS + 1, 7, PHONE, c1),  # the next hour: its own first click
        ("link0", hour_ms + 2, 7, PHONE, a2),  # same visitor, same link, same hour, same call
        ("link1", hour_ms + 3, 7, PHONE, b1),  # another link
    ]
    assert flags(batch) == [1, 1, 0, 1]
    assert flags(batch[::-1]) == [1, 0, 1, 1]  # replayed (another order): the same answers
    # Across the boundary in hour order (a backlog in stream order: no reordering), a bot-free visitor
    # on another link: first of each hour, then repeats.
    d1, d2 = ids.new(hour_ms + 20), ids.new(hour_ms + 21)
    e1, e2 = ids.new(hour_ms + HOUR_MS + 20), ids.new(hour_ms + HOUR_MS + 21)
    in_order = [("link2", t, 8, PHONE, i) for t, i in ((hour_ms + 20, d1), (hour_ms + 21, d2))]
    in_order += [
        ("link2", t, 8, PHONE, i) for t, i in ((hour_ms + HOUR_MS + 20, e1), (hour_ms + HOUR_MS + 21, e2))
    ]
    assert flags(in_order) == [1, 0, 1, 0]
    assert flags(in_order) == [1, 0, 1, 0]  # replayed
    assert flags([("link0", hour_ms + 9, 7, PHONE, ids.new(hour_ms + 9))]) == [0]  # a later call
    # One visitor on many links: every field lands in one shard, in several script chunks.
    many = [(f"code{i}", hour_ms + 10, 99, DESKTOP, ids.new(hour_ms + 10)) for i in range(5_000)]
    assert flags(many) == [1] * 5_000
    assert flags(many) == [1] * 5_000
    assert flags([(c, t, ip, ua, ids.new(t)) for c, t, ip, ua, _ in many[:10]]) == [0] * 10
    with pytest.raises(ValueError):
        flags([("link0", hour_ms + 1, 7, PHONE, "too-short")])


def test_unique_flag_survives_redelivery(redis_client, keys, ids, ch, consumer_factory) -> None:
    hour_ms = (int(time.time() * 1000) // HOUR_MS - 1) * HOUR_MS
    visit = {
        "code": "link0",
        "creator_id": "cr1",
        "merchant_id": "",
        "dest_host": "shop.example",
        "referer": "",
    }
    visit.update(ip_prefix="81.2.69.0/24", country="")

    def click(ts_ms: int, ip_hash: int, agent: str = PHONE, head: bool = False) -> Click:
        return Click(ids.new(ts_ms), ts_ms, user_agent=agent, ip_hash=ip_hash, is_head=head, **visit)

    clicks = [
        click(hour_ms + 1_000, 1),  # unique
        click(hour_ms + 2_000, 1),  # same visitor, same hour
        click(hour_ms + 3_000, 1, head=True),  # a preview: never unique
        click(hour_ms + 4_000, 1, agent=DESKTOP),  # another user agent: unique
        click(hour_ms + 5_000, 2),  # another visitor: unique
        click(hour_ms + HOUR_MS + 1_000, 1),  # the next hour: unique again
        click(hour_ms + HOUR_MS + 2_000, 1),
    ]
    fill(redis_client, keys, clicks, per_entry=2)

    def crash(point: str) -> None:
        if point == "before_insert":  # after enrichment ran (and recorded first clicks), before the insert
            raise Crash

    with pytest.raises(Crash):
        drain(consumer_factory("same", checkpoint=crash, batch_size=4))
    assert queries.click_count(ch) == 0
    assert drain(consumer_factory("same", batch_size=4)) is True
    flags = dict(ch.execute(f"SELECT click_id, is_unique FROM {ch.database}.clicks"))
    assert [flags[c.click_id] for c in clicks] == [1, 0, 0, 1, 1, 1, 0]


@pytest.mark.parametrize("point", ["before_insert", "after_insert", "after_ack", "after_trim"])
def test_crash_then_resume_in_process(redis_client, keys, ids, ch, consumer_factory, point) -> None:
    """The cheap in-process variant of the SIGKILL tests: the second batch dies at `point`."""
    clicks = make_clicks(ids, 2_500, start_ms=int(time.time() * 1000) - 2 * HOUR_MS, step_ms=2_000)
    fill(redis_client, keys, clicks)
    hits = []

    def crash(at: str) -> None:
        hits.append(at)
        if at == point and hits.count(point) == 2:
            raise Crash

    with pytest.raises(Crash):
        drain(consumer_factory("same", checkpoint=crash))
    assert drain(consumer_factory("same")) is True
    assert_exact(ch, clicks)
    assert redis_client.xlen(keys.clicks) == 0


def test_two_consumers_in_parallel(redis_client, keys, ids, ch, consumer_factory) -> None:
    clicks = make_clicks(ids, 10_000, start_ms=int(time.time() * 1000) - HOUR_MS, step_ms=1)
    fill(redis_client, keys, clicks, per_entry=50)
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    consumers = [consumer_factory(name, metrics=metrics, batch_size=500) for name in ("a", "b")]
    threads = [threading.Thread(target=drain, args=(c,)) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert_exact(ch, clicks)
    per_consumer = {
        row[0]: row[1]
        for row in ch.execute(f"SELECT stream_entry, count() FROM {ch.database}.clicks GROUP BY stream_entry")
    }
    assert len(per_consumer) == 200 and set(per_consumer.values()) == {50}
    acked = registry.get_sample_value("clicktrail_stream_entries_acked_total", {"stream": "clicks"})
    assert acked == 200


def test_poison_goes_to_the_dead_letter_stream(redis_client, keys, ids, ch, consumer_factory) -> None:
    good = make_clicks(ids, 200, start_ms=int(time.time() * 1000))
    bad_id = Click("not-a-click-id", 1, "x", "c", "", "h", False, "", "", 1, "", "")
    redis_client.xadd(keys.clicks, {"v": b"1", "c": encode_batch(good[:100])})
    redis_client.xadd(keys.clicks, {"v": b"2", "c": encode_batch(good[:1])})  # a future schema
    redis_client.xadd(keys.clicks, {"v": b"1", "c": b"\xc1garbage"})
    redis_client.xadd(keys.clicks, {"v": b"1", "c": b"\x93\x01\x02\x03"})  # msgpack, wrong shape
    redis_client.xadd(keys.clicks, {"v": b"1"})
    redis_client.xadd(keys.clicks, {"v": b"1", "c": encode_batch([bad_id])})
    # Values the table cannot hold (they would fail every insert of their batch): dead-lettered too.
    ok = good[0]
    for bad in (
        msgspec.structs.replace(ok, click_id=ok.click_id[:-1] + "*"),  # right length, wrong characters
        msgspec.structs.replace(ok, ts_ms=2**32 * 1000),  # ts (DateTime) is 32-bit seconds
        msgspec.structs.replace(ok, ip_hash=-1),  # UInt64
        msgspec.structs.replace(ok, variant=40_000),  # Int16: it blocked the stream behind it
        msgspec.structs.replace(ok, variant=-40_000),
    ):
        redis_client.xadd(keys.clicks, {"v": b"1", "c": encode_batch([ok, bad])})
    # an entry an operator put back from the dead-letter stream, its old reason and id still on it
    replayed = redis_client.xadd(
        keys.clicks, {"v": b"9", "c": b"x", "dead_reason": b"old", "dead_entry": b"1-1"}
    )
    redis_client.xadd(keys.clicks, {"v": b"1", "c": encode_batch(good[100:])})
    registry = CollectorRegistry()
    assert drain(consumer_factory(registry=registry)) is True
    assert_exact(ch, good)
    dead = redis_client.xrange(keys.clicks_dead)
    reasons = [fields[b"dead_reason"].decode() for _, fields in dead]
    # the short id; a bad character, a ts past 2106, a negative ip_hash, a variant past Int16 either way
    shapes = 6 * ["invalid_click"]
    assert reasons == [
        "schema_version",
        "undecodable",
        "invalid_click",
        "missing_clicks",
        *shapes,
        "schema_version",
    ]
    assert all(b"dead_entry" in fields for _, fields in dead)
    assert dead[-1][1][b"dead_entry"] == replayed
    assert (
        registry.get_sample_value(
            "clicktrail_stream_dead_letters_total", {"stream": "clicks", "reason": "invalid_click"}
        )
        == 7
    )
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] == 0


def test_a_dead_consumers_entries_are_claimed(redis_client, keys, ids, ch, consumer_factory) -> None:
    clicks = make_clicks(ids, 3_000, start_ms=int(time.time() * 1000) - HOUR_MS)
    fill(redis_client, keys, clicks)

    def die_after_insert(point: str) -> None:
        if point == "after_insert":
            raise Crash

    fast = {"claim_idle_ms": 1_500, "insert_timeout_s": 1.0}
    with pytest.raises(Crash):  # stored its first batch, never acked it
        drain(consumer_factory("dead", checkpoint=die_after_insert, **fast))
    # Its first batch (10 entries) is stored; it may have read the next one while that was written.
    held = redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"]
    assert held in (10, 20)
    time.sleep(1.6)
    registry = CollectorRegistry()
    assert drain(consumer_factory("alive", registry=registry, **fast)) is True
    assert_exact(ch, clicks)
    assert registry.get_sample_value("clicktrail_stream_claimed_entries_total", {"stream": "clicks"}) == held
    assert (
        registry.get_sample_value(
            "clicktrail_stream_records_total", {"stream": "clicks", "outcome": "already_stored"}
        )
        == 1000
    )


def test_clickhouse_down_keeps_the_backlog(redis_client, keys, ids, ch, consumer_factory, settings) -> None:
    clicks = make_clicks(ids, 1_000, start_ms=int(time.time() * 1000) - 60_000)
    fill(redis_client, keys, clicks)
    down = NativeClickHouse(f"clickhouse://default:@127.0.0.1:{free_port()}/{ch.database}")
    registry = CollectorRegistry()
    consumer = consumer_factory(
        "c1", backend=down, registry=registry, insert_timeout_s=0.2, claim_idle_ms=1_000
    )
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    time.sleep(2.0)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert redis_client.xlen(keys.clicks) == 10  # nothing trimmed
    assert redis_client.xpending(keys.clicks, INGEST_GROUP)["pending"] == 10  # nothing acked
    assert (
        registry.get_sample_value(
            "clicktrail_stream_errors_total", {"stream": "clicks", "kind": "clickhouse"}
        )
        >= 1
    )
    lag = registry.get_sample_value("clicktrail_stream_lag_entries", {"stream": "clicks"})
    lag_s = registry.get_sample_value("clicktrail_stream_lag_seconds", {"stream": "clicks"})
    assert lag == 10 and lag_s >= 1.5  # age of the oldest entry in the stream, not of the click
    # ClickHouse is back (a consumer with a working connection, same name): the backlog drains exactly.
    assert drain(consumer_factory("c1")) is True
    assert_exact(ch, clicks)


def test_trim_never_removes_pending_entries(redis_client, keys, ids, ch, consumer_factory) -> None:
    clicks = make_clicks(ids, 1_000, start_ms=int(time.time() * 1000))
    fill(redis_client, keys, clicks)
    fast = consumer_factory("fast")
    # Another consumer holds the first three entries (alive, working on them).
    held = redis_client.xreadgroup(INGEST_GROUP, "slow", {keys.clicks: ">"}, count=3)[0][1]
    assert drain(fast) is True
    remaining = [entry_id for entry_id, _ in redis_client.xrange(keys.clicks)]
    assert [entry_id for entry_id, _ in held] == remaining[:3]
    assert queries.click_count(ch) == 700


def test_link_events_mirror(redis_client, keys, ch, consumer_factory) -> None:
    import msgspec

    def event(code: str, merchant: str, disabled: bool, updated_at_ms: int) -> dict[str, bytes]:
        link = {
            "code": code,
            "url": f"https://shop.example/{code}",
            "creator_id": "cr1",
            "merchant_id": merchant,
            "host": "shop.example",
            "created_at_ms": 1_700_000_000_000,
            "disabled": disabled,
            "updated_at_ms": updated_at_ms,
        }
        return {"v": b"1", "l": msgspec.msgpack.encode(link)}

    redis_client.xadd(keys.link_events, event("abc1234", "", False, 1_700_000_000_000))
    redis_client.xadd(keys.link_events, event("abc1234", "m1", False, 1_700_000_000_500))
    redis_client.xadd(keys.link_events, {"v": b"1", "l": b"\xc1"})
    redis_client.xadd(keys.link_events, event("abc1234", "m1", True, 1_700_000_001_000))
    redis_client.xadd(keys.link_events, event("zzz0000", "", False, 1_700_000_000_000))

    def crash(point: str) -> None:
        if point == "after_insert":
            raise Crash

    with pytest.raises(Crash):
        drain(consumer_factory("l", links=True, checkpoint=crash))
    assert drain(consumer_factory("l", links=True)) is True
    assert ch.execute(f"SELECT count() FROM {ch.database}.links")[0][0] == 4
    latest = queries.latest_links(ch, ["abc1234", "zzz0000"])
    assert latest["abc1234"]["disabled"] is True and latest["abc1234"]["merchant_id"] == "m1"
    assert latest["zzz0000"]["disabled"] is False
    assert [f[b"dead_reason"] for _, f in redis_client.xrange(keys.link_events_dead)] == [b"undecodable"]
    assert redis_client.xlen(keys.link_events) == 0  # no retention asked: trimmed once stored


def test_retained_entries_stay_for_other_readers(redis_client, keys, ch, consumer_factory) -> None:
    """Link events are tailed by the redirect workers too: stored ones stay for the retention time."""
    import msgspec

    link = {
        "code": "abc1234",
        "url": "https://shop.example/",
        "creator_id": "cr1",
        "merchant_id": "",
        "host": "shop.example",
        "created_at_ms": 1,
        "disabled": False,
        "updated_at_ms": 1,
    }
    redis_client.xadd(keys.link_events, {"v": b"1", "l": msgspec.msgpack.encode(link)})
    assert drain(consumer_factory("l", links=True, retain_ms=60_000)) is True
    assert ch.execute(f"SELECT count() FROM {ch.database}.links")[0][0] == 1
    assert redis_client.xlen(keys.link_events) == 1
    assert redis_client.xpending(keys.link_events, INGEST_GROUP)["pending"] == 0


def test_a_batch_past_its_lease_is_not_inserted(redis_client, keys, ids, ch, consumer_factory) -> None:
    """An insert that could start after another consumer may have claimed the entries is given up; the
    entries go through the pending list and its existence check instead."""
    clicks = make_clicks(ids, 500, start_ms=int(time.time() * 1000))
    fill(redis_client, keys, clicks)
    stalls = []

    def stall_once(point: str) -> None:
        if point == "before_insert" and not stalls:
            stalls.append(point)
            time.sleep(0.7)  # longer than the lease: claim idle 1.5 s - insert timeout 1 s

    registry = CollectorRegistry()
    consumer = consumer_factory(
        checkpoint=stall_once, registry=registry, claim_idle_ms=1_500, insert_timeout_s=1.0
    )
    assert drain(consumer) is True
    assert (
        registry.get_sample_value("clicktrail_stream_errors_total", {"stream": "clicks", "kind": "lease"})
        == 1
    )
    assert_exact(ch, clicks)


def test_trim_waits_for_every_group(redis_client, keys, ids, ch, consumer_factory) -> None:
    """Another reader group (say a future exporter) that has read nothing keeps every entry in the stream."""
    clicks = make_clicks(ids, 1_000, start_ms=int(time.time() * 1000))
    fill(redis_client, keys, clicks)
    entries = redis_client.xlen(keys.clicks)
    redis_client.xgroup_create(keys.clicks, "other", id="0")
    assert drain(consumer_factory("c1")) is True
    assert queries.click_count(ch) == 1_000
    assert redis_client.xlen(keys.clicks) == entries


def test_a_link_event_clickhouse_cannot_hold_is_dead_lettered_not_retried(
    redis_client, keys, ch, consumer_factory
) -> None:
    """Poison found only at insert time would block the stream for ever; the shared LinkEvent limits turn
    it into a dead letter at decode time, and the good event after it is stored."""
    import msgspec

    from core.links import Link, link_event

    good = link_event(Link("good001", "https://s.example/", "c", "s.example", 1))
    fields = msgspec.msgpack.decode(good["l"])
    bad = {"v": b"1", "l": msgspec.msgpack.encode({**fields, "code": "bad0001", "created_at_ms": -1})}
    redis_client.xadd(keys.link_events, bad)
    redis_client.xadd(keys.link_events, good)
    assert drain(consumer_factory("l", links=True)) is True
    assert [row[0] for row in ch.execute(f"SELECT code FROM {ch.database}.links")] == ["good001"]
    assert [f[b"dead_reason"] for _, f in redis_client.xrange(keys.link_events_dead)] == [b"invalid_link"]


class _SettleCounted(NativeClickHouse):
    """The real backend, counting when the consumer asks it to finish failed inserts."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.settled = 0

    def settle_failed_inserts(self) -> None:
        self.settled += 1
        super().settle_failed_inserts()


def test_an_idle_consumer_lets_the_backend_finish_failed_inserts(
    redis_client, keys, ids, ch, consumer_factory, settings
) -> None:
    # A cluster backend keeps a block that failed part-way, and a replica in doubt, until it is asked to
    # settle them (core/cluster.py): with no traffic after the fault, only the idle step asks.
    backend = _SettleCounted(settings.clickhouse_url)
    consumer = consumer_factory(backend=backend, flush_interval_ms=10)
    fill(redis_client, keys, make_clicks(ids, 300, start_ms=int(time.time() * 1000) - HOUR_MS))
    assert consumer.step(block_ms=10) == 3  # entries of 100 clicks
    assert backend.settled == 0  # a fresh batch has nothing to finish first
    assert consumer.step(block_ms=10) == 0
    assert backend.settled == 1
    assert consumer.step(block_ms=10) == 0
    assert backend.settled == 2
    assert queries.click_count(ch) == 300
