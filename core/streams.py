"""Exactly-once delivery of a Redis stream into one ClickHouse table, for any kind of record.

A `StreamConsumer` joins the stream's consumer group and moves entries into ClickHouse; what an entry
means (how to decode it, the rows it becomes, how to tell whether a record is already stored) is the
`Handler`'s business, so the same consumer serves clicks, link events and order events.

Guarantee: every decodable entry's records are stored in ClickHouse exactly once, and so is every
row that materialized views derive from them, across SIGKILL at any point and any number of consumers
(processes or hosts) in the group; an undecodable entry goes to the dead-letter stream with its reason.
How:

- An entry read fresh (`XREADGROUP >`) has never been delivered before, so none of its records can be in
  ClickHouse: its batch is inserted as is.
- An entry delivered before (our own pending list after a restart or a failed insert, or an entry taken
  over from a dead consumer with `XAUTOCLAIM` after `claim_idle_ms`) may be stored already, wholly or in
  part: the handler asks ClickHouse which of its records are there (`Handler.existing`, by key) and only
  the others are inserted.
- The insert is one block: ClickHouse writes it part by part (one part per partition) and pushes the same
  block through the materialized views, so a record is in a rollup when it is in the table, whatever the
  *client* does (killed before, during or after the insert). An insert can fail between a part of the
  table and the matching part of a view (a cluster losing ZooKeeper): the backend finishes such a block
  (`settle_failed_inserts`, core/cluster.py) before the check. Not covered: a single node's *server*
  dying there, or an ingester killed while such a block waits to be finished; that record is then in the
  table and missing from the rollup (the per-record check skips it), and `queries.rollup_totals` shows it.
- Entries are acknowledged only after the insert returned, and the stream is trimmed (`XTRIM MINID`) only
  below every group's oldest pending entry and last delivered id: nothing not yet in ClickHouse is removed
  (and, with `retain_ms`, nothing younger than that, for readers outside the group).
- Poison entries are copied to the dead-letter stream and acknowledged in one MULTI, so they are neither
  lost nor dead-lettered twice, and never block the stream.

The lease assumption: a consumer that takes over a pending entry assumes its first owner is dead or has
given up. So an owner never starts an insert later than `claim_idle_ms - insert_timeout_s` after it read
the batch (otherwise it drops the batch and re-reads its pending list, which goes through the check), and
after a failed insert it waits `insert_timeout_s` before the re-check, so that an insert the client gave up
on has most likely finished or failed on the server by then. (The driver's timeout bounds each socket
operation, not the whole insert: this is a margin, not a proof.) Keep `claim_idle_ms` far above the insert
timeout (defaults: 60 s and 20 s). What is left: a process frozen (SIGSTOP, swap) for longer than the
claim idle time between that check and its insert could store a batch that a live consumer stores too.

Consumer names must be unique among live consumers; a stable name (`--consumer`) lets a restarted
ingester take back its own pending entries at once instead of waiting `claim_idle_ms`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import redis

from core import clock
from core.clickhouse import Backend
from core.streaminfo import LAG_INTERVAL_S, StreamMetrics, stream_lag, trim_floor

log = logging.getLogger(__name__)

# Dead-letter streams are for people to look at, not an archive: keep about the last this many.
DEAD_LETTER_MAXLEN = 100_000
# Entries per XREADGROUP / XAUTOCLAIM call at most; a batch is several calls. The count asked for is
# sized from the records per entry seen so far, so that a batch ends near `batch_size` records.
READ_COUNT = 200
FIRST_READ_COUNT = 10
# Back-off after a Redis or ClickHouse error, doubling up to the max.
ERROR_BACKOFF_MIN_S = 0.2
ERROR_BACKOFF_MAX_S = 5.0


class Poison(Exception):
    """An entry that can never be ingested (undecodable, unknown schema version); `reason` is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_payload(
    fields: dict[bytes, bytes], version: bytes, field: bytes, decoder: Any, missing: str, invalid: str
) -> Any:
    """An entry's versioned msgpack payload, decoded; or Poison: `schema_version`, `missing` (no payload),
    `invalid` (well-formed, wrong shape), `undecodable`."""
    if fields.get(b"v") != version:
        raise Poison("schema_version")
    payload = fields.get(field)
    if payload is None:
        raise Poison(missing)
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError:
        raise Poison(invalid) from None
    except msgspec.DecodeError:
        raise Poison("undecodable") from None


class Handler(Protocol):
    name: str  # metrics label, e.g. "clicks"
    table: str
    columns: Sequence[str]

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[Any]:
        """The records of one entry; raises Poison."""
        ...

    def key(self, record: Any) -> Hashable: ...

    def existing(self, backend: Backend, records: list[Any]) -> set[Hashable]:
        """Keys of those `records` that ClickHouse holds already."""
        ...

    def build(self, records: list[Any]) -> list[Sequence[Any] | Future]:
        """Column-oriented rows for `columns` (enrichment happens here). A column may be a Future: the
        writer waits for it just before the insert, so that work a handler waits on elsewhere (a Redis
        script) overlaps the reading of the next batch; its error fails the batch as any other."""
        ...

    def close(self) -> None:
        """Called once the consumer stopped and its last batch was written: end the handler's own
        threads."""
        ...


@dataclass(frozen=True)
class ConsumerConfig:
    stream: str
    dead_stream: str
    group: str
    consumer: str
    batch_size: int = 20_000  # records per insert
    flush_interval_ms: int = 1_000
    claim_idle_ms: int = 60_000
    insert_timeout_s: float = 20.0
    # Stored entries younger than this stay in the stream, for readers outside the group (the redirect
    # workers tail the link events to invalidate their caches).
    retain_ms: int = 0


@dataclass
class _Batch:
    recovered: bool
    read_at: float = field(default_factory=time.monotonic)
    entry_ids: list[str] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    handled: int = 0  # entries read, dead-lettered ones included


def no_checkpoint(point: str) -> None:
    return None


class StreamConsumer:
    def __init__(
        self,
        client: redis.Redis,
        backend: Backend,
        handler: Handler,
        config: ConsumerConfig,
        metrics: StreamMetrics,
        checkpoint: Callable[[str], None] = no_checkpoint,
    ) -> None:
        if config.claim_idle_ms / 1000 <= config.insert_timeout_s:
            raise ValueError("claim_idle_ms must exceed the insert timeout (see the lease assumption)")
        self._redis = client
        self._backend = backend
        self._handler = handler
        self._cfg = config
        self._metrics = metrics
        # Test hook: called at "before_insert", "after_insert", "after_ack", "after_trim".
        self._checkpoint = checkpoint
        self._lease_s = config.claim_idle_ms / 1000 - config.insert_timeout_s
        self._own_pending = True  # re-read our own pending list first (restart, failed insert)
        self._next_claim_at = 0.0
        self._claim_cursor = "0-0"
        self._next_lag_at = 0.0
        self._records_per_entry = 0.0
        # One batch is written (insert, ack, trim) in this thread while the next is read and enriched:
        # the insert mostly waits on ClickHouse, the enrichment on Python.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{handler.name}")
        self._inflight: Future | None = None

    def ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self._cfg.stream, self._cfg.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists already: fine; anything else is not
                raise

    # --- one step ---------------------------------------------------------------------------------
    def step(self, block_ms: int) -> int:
        """Read one batch and hand it to the writer; returns the number of entries handled, dead-lettered
        ones included. 0 means idle: nothing to read and nothing in flight or handed back."""
        if self._own_pending or time.monotonic() >= self._next_claim_at:
            self._settle()  # our pending list must not show a batch that is still being written
        batch = self._read_recovered() or self._read_fresh(block_ms)
        if batch is None:
            self._settle()
            # Idle: finish what a failed insert left (a cluster's kept blocks and replicas in doubt).
            self._backend.settle_failed_inserts()
            # The writer may have handed its batch back (lease): that is work left, not idleness.
            return 1 if self._own_pending else 0
        if batch.entry_ids:
            self._store(batch)
        return batch.handled

    def _settle(self) -> None:
        """Wait for the batch in flight; its error, if any, is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _read_recovered(self) -> _Batch | None:
        if self._own_pending:
            # One read per batch: our pending list is re-read from 0 after the ack, not paged.
            batch = _Batch(recovered=True)
            self._add(batch, self._read("0", self._cfg.batch_size))
            if batch.handled:
                return batch
            self._own_pending = False
        if time.monotonic() >= self._next_claim_at:
            batch = _Batch(recovered=True)
            while len(batch.records) < self._cfg.batch_size:
                entries = self._claim(self._cfg.batch_size - len(batch.records))
                self._add(batch, entries)
                if not entries or self._claim_cursor == "0-0":
                    break
            if batch.handled:
                self._metrics.claimed.labels(self._handler.name).inc(batch.handled)
                return batch
            self._next_claim_at = time.monotonic() + self._cfg.claim_idle_ms / 4000
        return None

    def _read_fresh(self, block_ms: int) -> _Batch | None:
        """Entries never delivered before, up to `batch_size` records or `flush_interval_ms` after the
        first of them arrived."""
        batch = _Batch(recovered=False)
        entries = self._read(">", self._cfg.batch_size, block_ms=max(block_ms, 1))  # 0 would be "forever"
        first_at = time.monotonic()
        while entries:
            self._add(batch, entries)
            left_ms = int((first_at + self._cfg.flush_interval_ms / 1000 - time.monotonic()) * 1000)
            if len(batch.records) >= self._cfg.batch_size or left_ms <= 0:
                break
            entries = self._read(">", self._cfg.batch_size - len(batch.records), block_ms=left_ms)
        return batch if batch.handled else None

    def _count(self, room: int) -> int:
        """Entries to ask for so that about `room` more records fit in the batch."""
        if self._records_per_entry <= 0:
            return FIRST_READ_COUNT
        return max(1, min(READ_COUNT, int(room / self._records_per_entry)))

    def _read(self, start: str, room: int, block_ms: int | None = None) -> list:
        reply = self._redis.xreadgroup(
            self._cfg.group,
            self._cfg.consumer,
            {self._cfg.stream: start},
            count=self._count(room),
            block=block_ms,
        )
        return reply[0][1] if reply else []

    def _claim(self, room: int) -> list:
        cursor, entries, *_ = self._redis.xautoclaim(
            self._cfg.stream,
            self._cfg.group,
            self._cfg.consumer,
            min_idle_time=self._cfg.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self._count(room),
        )
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        return entries

    def _add(self, batch: _Batch, entries: list) -> None:
        batch.handled += len(entries)
        poison: list[tuple[str, dict, str]] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            if fields is None:  # deleted from the stream while pending: nothing left to store
                poison.append((entry_id, {}, "deleted"))
                continue
            try:
                records = self._handler.decode(entry_id, fields)
            except Poison as exc:
                poison.append((entry_id, fields, exc.reason))
                continue
            batch.entry_ids.append(entry_id)
            batch.records.extend(records)
            if self._records_per_entry <= 0:
                self._records_per_entry = float(len(records))
            else:  # a moving average: producers' entry sizes drift with load
                self._records_per_entry += (len(records) - self._records_per_entry) / 16
        if poison:
            self._dead_letter(poison)

    def _dead_letter(self, poison: list[tuple[str, dict, str]]) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            for entry_id, fields, reason in poison:
                # Ours last: an entry replayed from a dead-letter stream carries the old pair, which must
                # not stand for why and where this one failed.
                body = {**fields, b"dead_reason": reason.encode(), b"dead_entry": entry_id.encode()}
                pipe.xadd(self._cfg.dead_stream, body, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.xack(self._cfg.stream, self._cfg.group, *[p[0] for p in poison])
            pipe.execute()
        for _, _, reason in poison:
            self._metrics.dead.labels(self._handler.name, reason).inc()

    # --- the write ---------------------------------------------------------------------------------
    def _store(self, batch: _Batch) -> None:
        handler, name = self._handler, self._handler.name
        records = batch.records
        if batch.recovered and records:  # nothing is in flight: see step()
            # A block that failed part-way is finished first: its records then count as stored.
            self._backend.settle_failed_inserts()
            present = handler.existing(self._backend, records)
            if present:
                records = [r for r in records if handler.key(r) not in present]
                self._metrics.records.labels(name, "already_stored").inc(len(batch.records) - len(records))
        columns = handler.build(records) if records else []
        self._settle()
        self._inflight = self._writer.submit(self._write, batch, len(records), columns)

    def _write(self, batch: _Batch, count: int, columns: list[Any]) -> None:
        handler, name = self._handler, self._handler.name
        if count:
            columns = [column.result() if isinstance(column, Future) else column for column in columns]
            self._checkpoint("before_insert")
            if time.monotonic() - batch.read_at > self._lease_s:
                # Another consumer may claim these entries before our insert ends: let the pending list
                # (and its check) deal with them instead.
                self._metrics.errors.labels(name, "lease").inc()
                self._own_pending = True
                return
            started = time.monotonic()
            self._backend.insert(handler.table, handler.columns, columns)
            self._metrics.insert_seconds.labels(name).observe(time.monotonic() - started)
            self._metrics.records.labels(name, "inserted").inc(count)
        self._checkpoint("after_insert")
        self._redis.xack(self._cfg.stream, self._cfg.group, *batch.entry_ids)
        self._metrics.entries.labels(name).inc(len(batch.entry_ids))
        self._checkpoint("after_ack")
        keep_after_ms = clock.now_ms() - self._cfg.retain_ms if self._cfg.retain_ms else None
        floor = trim_floor(self._redis, self._cfg.stream, keep_after_ms)
        if floor is not None:
            self._redis.xtrim(self._cfg.stream, minid=floor, approximate=False)
        self._checkpoint("after_trim")

    # --- loops -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._handler.name

    def run(self, stop: threading.Event, once: bool = False) -> bool:
        """Move batches until `stop` is set (the batch in hand is stored and acked first). Errors are counted
        and retried with back-off; with `once`, the loop ends when nothing is left to read now, or at the
        first error (returns False: the entries stay pending for the next run)."""
        if not self._retrying(self.ensure_group, stop, once):
            return False
        backoff_s = ERROR_BACKOFF_MIN_S
        ok = True
        while not stop.is_set():
            try:
                self._refresh_lag()
                handled = self.step(block_ms=10 if once else self._cfg.flush_interval_ms)
            except redis.RedisError as exc:
                self._failed("redis", exc)
                wait_s = backoff_s
            except Exception as exc:  # ClickHouse (driver, socket) errors have no common base class
                self._failed("clickhouse", exc)
                # An insert we gave up on may still run on the server: let it end before the re-check.
                wait_s = max(backoff_s, self._cfg.insert_timeout_s)
            else:
                backoff_s = ERROR_BACKOFF_MIN_S
                if once and handled == 0:
                    break
                continue
            if once:
                ok = False
                break
            stop.wait(wait_s)
            backoff_s = min(backoff_s * 2, ERROR_BACKOFF_MAX_S)
        try:
            self._settle()  # stopping: the batch in flight is stored and acked before we return
        except Exception as exc:
            self._failed("clickhouse" if not isinstance(exc, redis.RedisError) else "redis", exc)
            ok = False
        self._writer.shutdown(wait=True)
        self._handler.close()
        with contextlib.suppress(redis.RedisError):
            self._refresh_lag(force=True)
        return ok

    def _failed(self, kind: str, exc: BaseException) -> None:
        self._metrics.errors.labels(self._handler.name, kind).inc()
        log.warning("%s ingest: %s error: %s", self._handler.name, kind, exc)
        self._own_pending = True

    def _retrying(self, action: Callable[[], None], stop: threading.Event, once: bool) -> bool:
        while not stop.is_set():
            try:
                action()
                return True
            except redis.RedisError as exc:
                self._failed("redis", exc)
                if once:
                    return False
                stop.wait(ERROR_BACKOFF_MAX_S)
        return False

    def _refresh_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_lag_at and not force:
            return
        self._next_lag_at = now + LAG_INTERVAL_S
        entries, seconds = stream_lag(self._redis, self._cfg.stream, self._cfg.group)
        self._metrics.lag_entries.labels(self._handler.name).set(entries)
        self._metrics.lag_seconds.labels(self._handler.name).set(seconds)


@dataclass(frozen=True)
class StreamSpec:
    """One stream the ingest process drains. `make_handler` gets the consumer's own Redis client."""

    name: str
    stream: str
    dead_stream: str
    make_handler: Callable[[redis.Redis], Handler]
    retain_ms: int = 0  # see ConsumerConfig.retain_ms
