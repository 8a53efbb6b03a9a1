"""The durable side of events out: the event stream, the fan-out into one queue per endpoint, and each
queue's head, retries, dead letters and replay. All state lives in Redis (keys in core/keys.py).

Guarantees (proved by tests/integration/test_events_out.py):
- `emit` is idempotent per event id: one Lua script appends the event to `Keys.events` and marks its id
  in `Keys.event_seen` for the retention period, so announcing the same facts twice stores them once.
- Fan-out copies stream entries into endpoint queues in stream order. Each endpoint remembers the last
  stream id it took (`cursor` in its hash, compared and moved in the same script that appends), so a
  fan-out repeated after a crash adds nothing twice; one worker fans out at a time (a lease).
- A queue entry leaves its queue only when delivered (2xx) or dead-lettered, both in one transaction
  with the endpoint's delivery state: a worker killed mid-request leaves the entry at the head, and the
  next worker sends it again (at least once, in order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

import msgspec
from redis.asyncio import Redis

from attribution import events_out
from attribution.endpoints import RECORD_FIELD, Endpoint, EndpointStore
from attribution.events_out import Event
from core.clock import now_ms as clock_ms
from core.keys import Keys
from core.links import Link
from core.streams import Poison

log = logging.getLogger("clicktrail.events")

FANOUT_BATCH = 500
# A replay appends at most this many past events at once (call it again with a later `since` for more).
MAX_REPLAY_EVENTS = 10_000
# Dead letters kept per endpoint; the oldest go first.
MAX_DEAD_LETTERS = 10_000
STATE_FIELDS = ("attempts", "first_attempt_ms", "next_attempt_ms", "last_error")
_DEAD_FIELDS = (b"dead_reason", b"dead_entry", b"dead_staged")
# The dead-letter reason of a staged event that does not decode (`Outbox.staged`).
STAGED_UNDECODABLE = "undecodable_staged"
# The drop reason of a link event whose emission failed after its link was stored (redirector/api.py).
LINK_EVENT_LOST = "link_event_lost"
# The family every process counts its dropped records in (`serve`: redirector/metrics.py, summed over its
# workers; `deliver`: attribution/delivery.py).
RECORDS_DROPPED_METRIC = "clicktrail_records_dropped"
RECORDS_DROPPED_HELP = (
    "Records dropped, by reason (stored records that do not decode count each time they are read)"
)
# What the next attributor run reads of a staged event (Attributor._announce_staged).
STAGED_IDS = ("merchant_id", "run_id", "order_id")
# A chunk's events are staged as one value, a JSON array, under this prefix and the chunk's first event id:
# one field per event cost the run's one Python thread 3-4 µs an event to stage and unstage, and Redis as
# much again. A field without the prefix is one event under its own id (the layout of earlier releases).
STAGED_CHUNK_PREFIX = b"chunk:"

# KEYS: the stream, then one `event_seen` marker per event; ARGV: retention ms, MINID, then the events in
# the same order. Each event is appended once (by its marker); returns how many were new. Many events per
# call: one round trip per event made emission the largest share of an attributor run's time.
_EMIT = """
local appended = 0
for i = 2, #KEYS do
    if redis.call('SET', KEYS[i], 1, 'NX', 'PX', ARGV[1]) then
        redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'e', ARGV[i + 1])
        appended = appended + 1
    end
end
return appended
"""
# Events per emit script call: bounds the time one call holds Redis (a few ms).
EMIT_BATCH = 500

# Lua: returns 0 unless the stream id ARGV[1] lies past the `cursor` field of the hash KEYS[1] (so that an
# entry already passed, by this worker before a crash or by another, is not handled twice).
_PAST_CURSOR = """
local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
end
local a_ms, a_seq = parse(ARGV[1])
local b_ms, b_seq = parse(redis.call('HGET', KEYS[1], 'cursor') or '0-0')
if a_ms < b_ms or (a_ms == b_ms and a_seq <= b_seq) then return 0 end
"""

_ENQUEUE = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
"""
    + _PAST_CURSOR
    + """
redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[1], 'cursor', ARGV[1])
return 1
"""
)

_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV do redis.call('XADD', KEYS[2], '*', 'e', ARGV[i]) end
return #ARGV
"""

# The delivery state changes only while the endpoint exists: a delete during an attempt leaves no orphan.
_RETRY_LATER = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_DEAD_LETTER = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '*', 'e', ARGV[3], 'error', ARGV[4], 'at_ms', ARGV[5])
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'attempts', 'first_attempt_ms', 'next_attempt_ms', 'last_error')
return 1
"""

# KEYS: the fan-out hash, the event stream's dead letters; ARGV: the entry id, the dead letters kept, the
# reason, then the entry's fields (name, value, ...). Moves the cursor past the entry in the same step,
# so a fan-out repeated after a crash never dead-letters it twice. Returns 1 if it was dead-lettered now.
_FANOUT_DEAD = (
    _PAST_CURSOR
    + """
local body = {}
for i = 4, #ARGV do body[#body + 1] = ARGV[i] end
body[#body + 1] = 'dead_reason'
body[#body + 1] = ARGV[3]
body[#body + 1] = 'dead_entry'
body[#body + 1] = ARGV[1]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(body))
redis.call('HSET', KEYS[1], 'cursor', ARGV[1])
return 1
"""
)

_REPLAY_DEAD = """
local dead = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', ARGV[1])
for _, entry in ipairs(dead) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
        if fields[i] == 'e' then redis.call('XADD', KEYS[2], '*', 'e', fields[i + 1]) end
    end
    redis.call('XDEL', KEYS[3], entry[1])
end
return #dead
"""


class Staged(NamedTuple):
    """What `Outbox.staged` found: the events, the fields they were staged under (for `unstage`), and how
    many values were dead-lettered instead."""

    events: list[Event]
    fields: list[bytes]
    dead_lettered: int


class Undecodable(Exception):
    """The head of an endpoint's queue is not an event this code can read (written by hand, or by another
    version): dead-lettered as it is, so that it blocks nothing behind it."""

    def __init__(self, entry_id: str, payload: bytes, reason: str) -> None:
        super().__init__(reason)
        self.entry_id, self.payload, self.reason = entry_id, payload, reason


def read_entry(fields: dict[bytes, bytes]) -> Event:
    """The event of an event-stream entry, or Poison: `missing_event` (no `e` field), `invalid_event` (JSON
    of another shape), `undecodable` (not JSON), the reasons the ingester gives its own streams."""
    payload = fields.get(b"e")
    if payload is None:
        raise Poison("missing_event")
    try:
        return events_out.decode(payload)
    except msgspec.ValidationError:
        raise Poison("invalid_event") from None
    except msgspec.DecodeError:
        raise Poison("undecodable") from None


class Outbox:
    def __init__(self, redis: Redis, keys: Keys, retention_days: int = 7, public_url: str = "") -> None:
        self._redis = redis
        self._keys = keys
        self._retention_ms = retention_days * 86_400_000
        self._public_url = public_url
        self._emit = redis.register_script(_EMIT)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._append = redis.register_script(_APPEND)
        self._replay_dead = redis.register_script(_REPLAY_DEAD)
        self._retry_later = redis.register_script(_RETRY_LATER)
        self._dead_letter = redis.register_script(_DEAD_LETTER)
        self._fanout_dead = redis.register_script(_FANOUT_DEAD)

    # --- emitting ----------------------------------------------------------------------------------
    async def emit(self, events: Iterable[Event], now_ms: int, encoded: list[bytes] | None = None) -> int:
        """Append each event once (by id); returns how many were new. `encoded`: the events already
        encoded (events_out.encode), in the same order."""
        keys = self._keys
        minid = max(0, now_ms - self._retention_ms)
        pending = list(events)
        if encoded is None:
            encoded = [events_out.encode(e) for e in pending]
        appended = 0
        for start in range(0, len(pending), EMIT_BATCH):
            batch = pending[start : start + EMIT_BATCH]
            args = [self._retention_ms, minid, *encoded[start : start + EMIT_BATCH]]
            seen = [keys.event_seen(e.id) for e in batch]
            appended += int(await self._emit(keys=[keys.events, *seen], args=args))
        return appended

    async def link_created(self, link: Link, now_ms: int | None = None) -> None:
        event = events_out.link_event("link.created", link, self._public_url)
        await self.emit([event], clock_ms() if now_ms is None else now_ms)

    async def link_updated(self, link: Link, now_ms: int | None = None) -> None:
        """The one call a link change makes once it is stored (PATCH, disable): `link.updated` for this
        version of the link, to its creator's and its merchant's endpoints."""
        event = events_out.link_event("link.updated", link, self._public_url)
        await self.emit([event], clock_ms() if now_ms is None else now_ms)

    async def stage(self, events: list[Event], encoded: list[bytes] | None = None) -> bytes | None:
        """Stage one chunk's events as one value; returns its field (for `unstage`), None if no events."""
        if not events:
            return None
        if encoded is None:
            encoded = [events_out.encode(e) for e in events]
        elif len(encoded) != len(events):
            raise ValueError(f"{len(encoded)} encoded events for {len(events)} events")
        field = STAGED_CHUNK_PREFIX + events[0].id.encode()
        await self._redis.hset(self._keys.events_staged, field, b"[" + b",".join(encoded) + b"]")
        return field

    async def staged(self) -> Staged:
        """The staged events, and how many staged values could not be announced (a value staged by a
        release whose format this one cannot read: not events, or events without the ids the next run
        groups by, or an event filed under another id than its own): those go to the event dead letters
        as they came, with their field, counted in the attributor's statistics in the same transaction,
        so that one of them cannot fail every run, nor be read again by every run."""
        events: list[Event] = []
        fields: list[bytes] = []
        unreadable = []
        for field, raw in (await self._redis.hgetall(self._keys.events_staged)).items():
            found = _staged_events(field, raw)
            if found is None:
                unreadable.append((field, raw))
            else:
                events += found
                fields.append(field)
        if unreadable:
            keys = self._keys
            async with self._redis.pipeline(transaction=True) as pipe:
                for field, raw in unreadable:
                    body = {b"e": raw, b"dead_reason": STAGED_UNDECODABLE.encode(), b"dead_staged": field}
                    pipe.xadd(keys.events_dead, body, maxlen=MAX_DEAD_LETTERS, approximate=True)
                pipe.hdel(keys.events_staged, *[field for field, _ in unreadable])
                pipe.hincrby(keys.attribution_stats, f"dead:{STAGED_UNDECODABLE}", len(unreadable))
                await pipe.execute()
            for field, _ in unreadable:
                log.error("staged value %r dead-lettered: %s", field, STAGED_UNDECODABLE)
        return Staged(events, fields, len(unreadable))

    async def unstage(self, fields: Iterable[bytes | None]) -> None:
        """Remove staged values by the fields `stage` or `staged` returned."""
        present = [field for field in fields if field is not None]
        if present:
            await self._redis.hdel(self._keys.events_staged, *present)

    # --- fan-out -----------------------------------------------------------------------------------
    async def fan_out(self, store: EndpointStore, dead_lettered: Callable[[str], None]) -> int:
        """Copy the next batch of stream entries into the queues of the endpoints that want them; returns
        how many entries were read (0: caught up). An entry that is no event goes to `Keys.events_dead`
        instead, and `dead_lettered(reason)` is called once for it. The caller holds the fan-out lease."""
        keys = self._keys
        cursor = (await self._redis.hget(keys.events_fanout, "cursor") or b"0-0").decode()
        entries = await self._redis.xrange(keys.events, f"({cursor}", "+", count=FANOUT_BATCH)
        if not entries:
            return 0
        by_owner: dict[str, list[Endpoint]] = {}
        for stream_id, fields in entries:
            try:
                event = read_entry(fields)
            except Poison as exc:
                # Kept with its reason, never a block: every entry behind it is fanned out as usual.
                if await self._dead_letter_entry(stream_id, fields, exc.reason):
                    dead_lettered(exc.reason)
                    log.error("event stream entry %s dead-lettered: %s", stream_id.decode(), exc.reason)
                continue
            for owner in event.subjects:
                if owner not in by_owner:
                    by_owner[owner] = await store.of_owner(owner)
                for endpoint in by_owner[owner]:
                    if event.type in endpoint.events:
                        await self._enqueue(
                            keys=[keys.endpoint(endpoint.id), keys.endpoint_queue(endpoint.id)],
                            args=[stream_id, fields[b"e"]],
                        )
        await self._redis.hset(keys.events_fanout, "cursor", entries[-1][0])
        return len(entries)

    async def _dead_letter_entry(self, stream_id: bytes, fields: dict[bytes, bytes], reason: str) -> bool:
        # Ours last: an entry copied back from the dead letters by hand carries the old pair.
        body = [item for name, value in fields.items() if name not in _DEAD_FIELDS for item in (name, value)]
        keys = [self._keys.events_fanout, self._keys.events_dead]
        args = [stream_id, MAX_DEAD_LETTERS, reason, *body]
        return bool(int(await self._fanout_dead(keys=keys, args=args)))

    # --- one endpoint's queue ----------------------------------------------------------------------
    async def head(self, endpoint_id: str) -> tuple[str, Event, dict[str, str]] | None:
        """The entry in flight (oldest undelivered), its event and the delivery state, or None."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._keys.endpoint_queue(endpoint_id), "-", "+", count=1)
            pipe.hmget(self._keys.endpoint(endpoint_id), STATE_FIELDS)
            entries, state = await pipe.execute()
        if not entries:
            return None
        entry_id, fields = entries[0]
        values = {k: v.decode() for k, v in zip(STATE_FIELDS, state, strict=True) if v is not None}
        try:
            event = events_out.decode(fields[b"e"])
        except (KeyError, msgspec.MsgspecError) as exc:
            raise Undecodable(entry_id.decode(), fields.get(b"e", b""), str(exc)) from None
        return entry_id.decode(), event, values

    async def delivered(self, endpoint_id: str, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xdel(self._keys.endpoint_queue(endpoint_id), entry_id)
            pipe.hdel(self._keys.endpoint(endpoint_id), *STATE_FIELDS)
            await pipe.execute()

    async def retry_later(self, endpoint_id: str, state: dict[str, int | str]) -> None:
        args = [item for pair in state.items() for item in pair]
        await self._retry_later(keys=[self._keys.endpoint(endpoint_id)], args=args)

    async def dead_letter(
        self, endpoint_id: str, entry_id: str, event: Event, error: str, now_ms: int
    ) -> None:
        await self.dead_letter_raw(endpoint_id, entry_id, events_out.encode(event), error, now_ms)

    async def dead_letter_raw(
        self, endpoint_id: str, entry_id: str, payload: bytes, error: str, now_ms: int
    ) -> None:
        """`dead_letter` of an entry as stored (one that does not decode is kept as it came)."""
        keys = self._keys
        ekeys = [
            keys.endpoint(endpoint_id),
            keys.endpoint_queue(endpoint_id),
            keys.endpoint_dead(endpoint_id),
        ]
        args = [entry_id, MAX_DEAD_LETTERS, payload, error, now_ms]
        await self._dead_letter(keys=ekeys, args=args)

    async def counts(self, endpoint_id: str) -> tuple[int, int, dict[str, str]]:
        """(queued, dead-lettered, delivery state)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._keys.endpoint_queue(endpoint_id))
            pipe.xlen(self._keys.endpoint_dead(endpoint_id))
            pipe.hmget(self._keys.endpoint(endpoint_id), STATE_FIELDS)
            queued, dead, state = await pipe.execute()
        return (
            queued,
            dead,
            {k: v.decode() for k, v in zip(STATE_FIELDS, state, strict=True) if v is not None},
        )

    async def queue_sizes(self, endpoint_ids: list[str]) -> list[tuple[int, int]]:
        """(queued, dead-lettered) of each endpoint, in one round trip for all (the admin's health page)."""
        if not endpoint_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id in endpoint_ids:
                pipe.xlen(self._keys.endpoint_queue(endpoint_id))
                pipe.xlen(self._keys.endpoint_dead(endpoint_id))
            sizes = await pipe.execute()
        return list(zip(sizes[0::2], sizes[1::2], strict=True))

    async def dead_letters(self, endpoint_id: str, limit: int) -> list[dict]:
        entries = await self._redis.xrevrange(self._keys.endpoint_dead(endpoint_id), count=limit)
        out = []
        for _, fields in entries:
            try:
                event = events_out.decode(fields[b"e"])
                event_id, event_type = event.id, event.type
            except (KeyError, msgspec.MsgspecError):  # an entry that never decoded (Undecodable)
                event_id, event_type = "", ""
            out.append(
                {
                    "event_id": event_id,
                    "type": event_type,
                    "error": fields[b"error"].decode(),
                    "at_ms": int(fields[b"at_ms"]),
                }
            )
        return out

    # --- replay ------------------------------------------------------------------------------------
    async def replay(self, endpoint: Endpoint, since_ms: int | None) -> tuple[int, int]:
        """Move the endpoint's dead letters back to its queue, and with `since_ms` also append the past
        events it wants from that time on (still in the stream: `EVENTS_RETENTION_DAYS`). The receiver
        sees the same event ids again. Returns (dead letters re-queued, past events re-queued)."""
        keys = self._keys
        ekeys = [
            keys.endpoint(endpoint.id),
            keys.endpoint_queue(endpoint.id),
            keys.endpoint_dead(endpoint.id),
        ]
        requeued = int(await self._replay_dead(keys=ekeys, args=[MAX_DEAD_LETTERS]))
        if since_ms is None:
            return requeued, 0
        wanted = []
        start = f"{since_ms}-0"
        while len(wanted) < MAX_REPLAY_EVENTS:
            entries = await self._redis.xrange(keys.events, start, "+", count=FANOUT_BATCH)
            for _, fields in entries:
                try:
                    event = read_entry(fields)
                except Poison:
                    continue  # no event to send: the fan-out dead-letters and counts it, once
                if endpoint.owner in event.subjects and event.type in endpoint.events:
                    wanted.append(fields[b"e"])
            if len(entries) < FANOUT_BATCH:
                break
            start = "(" + entries[-1][0].decode()
        wanted = wanted[:MAX_REPLAY_EVENTS]
        for i in range(0, len(wanted), FANOUT_BATCH):
            await self._append(keys=ekeys[:2], args=wanted[i : i + FANOUT_BATCH])
        return requeued, len(wanted)


def _staged_events(field: bytes, raw: bytes) -> list[Event] | None:
    """The events of one staged value (a chunk's array, or one event of an earlier release's layout), or
    None when they cannot be announced."""
    try:
        if field.startswith(STAGED_CHUNK_PREFIX):
            events = _staged_chunk.decode(raw)
        else:
            events = [events_out.decode(raw)]
            # unstaged by its field, an event filed under another id would stay and be read every run
            if events[0].id.encode() != field:
                return None
    except msgspec.MsgspecError:
        return None
    if all(isinstance(event.data.get(k), str) for event in events for k in STAGED_IDS):
        return events
    return None


_staged_chunk = msgspec.json.Decoder(list[Event])


async def record_exists(redis: Redis, keys: Keys, endpoint_id: str) -> bool:
    return bool(await redis.hexists(keys.endpoint(endpoint_id), RECORD_FIELD))
