"""The compact tier of the link cache: one `bytes` per code (msgpack, no Python object per field), in
small dicts, so that a worker holds millions of links and finds each with one dict lookup.

A record is a msgpack array in `Packed`'s field order with its trailing defaults left out: a plain link
costs its URL, its creator and a few bytes more. Its host is kept as a slice of its URL where it is one
(the usual case). The code is the key, not part of the record; a "no such code" is a record of its expiry
alone.

Records live in shards, small dicts chosen by the code's hash: one big dict would stall the event loop
for tens of milliseconds each time it grows or compacts past a million entries (measured), a small one
for microseconds. Eviction is a counting CLOCK (second chances), not an exact LRU: a lookup only counts a
use on the code's mark (up to `MAX_MARK`), it never moves the record, because moving a record to the back
of its shard on every hit of uniform traffic left the dicts' tables full of deleted entries (about 70
bytes a link more, measured at a million links) and saved no time. Each shard's insertion order is its
queue. Whenever a put would take the total over the budget, room is made first: the front record of the
fuller of two shards (the one about to be put into and the next in turn, which keeps the shards' sizes
even) is dropped, unless its mark counts a use: then the other shard's front record goes instead if its
mark counts none (a shard whose links are all in use keeps them), and if both count uses, the fuller's
front loses one and goes to the back of its shard's queue (at most `SECOND_CHANCES` times per put, so a
put never sweeps a whole cache of records in use). Counting up to three rather than marking once keeps
the links used often through the sweeps of a shard fuller than most: with single marks, 16 shards missed
up to 1.5 points more than an LRU on the popular workload of the tests, with counts 0.7 (over 20 hash
seeds). The marks are a byte per hash slot, not per record, so two codes may share one: a code may keep a
neighbour's count (it stays a lap longer) or lose it to a neighbour's sweep; with a slot per 32 bytes of
budget that is about one code in eight of a full cache. In the unit tests
(tests/unit/test_link_cache_lru.py) the miss ratio is typically 0 to 0.3 percentage points above an exact
LRU's of the same byte size; over 340 hash seeds (the shards and mark slots follow the process's string
hash) the worst was 1.12 points, and 1.48 with the decoded tier in front. Records drop one at a time as
others come, so no eviction frees much at once and stalls the event loop."""

from __future__ import annotations

import msgspec

from core.links import OPEN_IN_DEFAULT, Link, Smart
from core.validate import DEFAULT_CLICK_PARAM

# What one record costs beyond the bytes of its code and its record, measured on CPython 3.11 (64-bit):
# the code's str header (49) and the record's bytes header (33), their rounding to 16 bytes, and the
# dictionary's share (about 42 bytes a key at its usual load).
ENTRY_OVERHEAD_BYTES = 140
# A shard holds about this share of the budget (a few hundred links): small enough that growing or
# compacting it, and finding its front record past the deleted entries before it, takes microseconds.
SHARD_BYTES = 64 * 1024
# One mark (a byte counting uses) per this many bytes of budget: about eight slots per cached link.
MARK_BYTES = 32
# The most uses a mark counts: how many sweeps a link used often survives without being used again.
MAX_MARK = 3
# Upper bounds for a budget far beyond what a worker fills (LINK_CACHE_BYTES has none): the shards' list
# and the marks are allocated whole at start-up and at each clear, so they must not grow with it. Past
# them a shard holds more links and more codes share a mark.
MAX_SHARDS = 1 << 16
MAX_MARKS = 1 << 26  # 64 MiB: a slot per 32 bytes of a 2 GiB budget
# How many records in use one put may send to the back of their queue before it drops one anyway.
SECOND_CHANCES = 64
# The epoch (see PackedLinks) advances each time this share of the budget has been put.
EPOCHS_PER_BUDGET = 8


class Packed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One cached record, field order = wire order (rare fields last, so they are usually left out)."""

    expires_ms: int
    url: str = ""  # "": the code has no link (a cached "no such code")
    creator_id: str = ""
    created_at_ms: int = 0
    host_at: int = 0  # the host is url[host_at:host_end] when host_end > 0, else `host`
    host_end: int = 0
    host: str = ""
    merchant_id: str | None = None
    click_param: str = DEFAULT_CLICK_PARAM
    disabled: bool = False
    updated_at_ms: int = 0
    open_in: str = OPEN_IN_DEFAULT
    smart: Smart | None = None  # smart links are rare: kept as msgspec encodes them (a map)


_DEFAULTS = tuple(f.default for f in msgspec.structs.fields(Packed))
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Packed)


def pack(link: Link | None, expires_ms: int) -> bytes:
    if link is None:
        return _encoder.encode((expires_ms,))
    url, host = link.url, link.host
    host_at = url.find(host) if host else -1
    host_end = host_at + len(host) if host_at >= 0 else 0
    fields = [expires_ms, url, link.creator_id, link.created_at_ms, max(host_at, 0), host_end,
              "" if host_end else host, link.merchant_id, link.click_param, link.disabled,
              link.updated_at_ms, link.open_in, link.smart]  # fmt: skip
    while fields[-1] == _DEFAULTS[len(fields) - 1] and len(fields) > 2:
        fields.pop()
    return _encoder.encode(fields)


def unpack(code: str, record: bytes) -> tuple[int, Link | None]:
    """(expiry in ms, the link or None) of a record packed for `code`."""
    p = _decoder.decode(record)
    if not p.url:
        return p.expires_ms, None
    url = p.url
    host = url[p.host_at : p.host_end] if p.host_end else p.host
    link = Link(code, url, p.creator_id, host, p.created_at_ms, p.merchant_id, p.click_param, p.disabled,
                p.updated_at_ms, p.smart, p.open_in)  # fmt: skip
    return p.expires_ms, link


def cost(code: str, record: bytes) -> int:
    """What a record is counted as against the budget (its share of the worker's memory, about)."""
    return len(code) + len(record) + ENTRY_OVERHEAD_BYTES


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class PackedLinks:
    """Records by code within `max_bytes` (see the module's docstring). `epoch` advances each time an
    eighth of the budget has been put: a caller that served a record without `get` (the decoded tier)
    calls `get` again once the epoch has changed, which counts a use well before the sweep comes round
    (a lap takes about the whole budget's worth of puts)."""

    __slots__ = ("_bytes", "_epoch_bytes", "_hand", "_mark_mask", "_marks", "_mask", "_max_bytes",
                 "_put_since_epoch", "_shards", "epoch")  # fmt: skip

    def __init__(self, max_bytes: int, shard_bytes: int = SHARD_BYTES) -> None:
        self._max_bytes = max_bytes
        shards = min(_power_of_two_at_least(max_bytes // shard_bytes), MAX_SHARDS)
        self._shards: list[dict[str, bytes]] = [{} for _ in range(shards)]
        self._mask = shards - 1
        marks = min(max(_power_of_two_at_least(max_bytes // MARK_BYTES), 1024), MAX_MARKS)
        self._marks = bytearray(marks)
        self._mark_mask = marks - 1
        self._hand = 0  # the next shard in turn to give up a record
        self._bytes = 0
        self._epoch_bytes = max(max_bytes // EPOCHS_PER_BUDGET, 1)
        self._put_since_epoch = 0
        self.epoch = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, code: str) -> bytes | None:
        """The record, its use counted; None when not held."""
        return self.find(code, hash(code))

    def find(self, code: str, at: int) -> bytes | None:
        """`get` with the code's hash already taken (`at`): the redirect path hashes a code once."""
        record = self._shards[at & self._mask].get(code)
        if record is not None:
            marks, slot = self._marks, at & self._mark_mask
            if marks[slot] < MAX_MARK:
                marks[slot] += 1
        return record

    def put(self, code: str, record: bytes) -> None:
        self.drop(code)
        size = cost(code, record)
        if size > self._max_bytes:
            return  # only with a budget of a few records: such a record is read from Redis each time
        own = self._shards[hash(code) & self._mask]
        if self._bytes + size > self._max_bytes:
            # Room is made before the record goes in, so it is never the one dropped (in a shard of its own
            # it would be the oldest).
            self._evict(own, self._max_bytes - size)
        own[code] = record
        self._bytes += size
        self._put_since_epoch += size
        if self._put_since_epoch >= self._epoch_bytes:
            self._put_since_epoch = 0
            self.epoch += 1

    def _evict(self, own: dict[str, bytes], limit: int) -> None:
        """Drop records until at most `limit` bytes are held (`own`: the shard about to be put into)."""
        shards, marks, mark_mask = self._shards, self._marks, self._mark_mask
        chances = SECOND_CHANCES
        while self._bytes > limit:
            turn = shards[self._hand]
            self._hand = (self._hand + 1) & self._mask
            shard = own if len(own) >= len(turn) else turn
            if not shard:
                continue  # both empty: the next in turn (some shard holds a record: bytes > 0)
            code = next(iter(shard))
            slot = hash(code) & mark_mask
            other = turn if shard is own else own
            if marks[slot] and other:
                other_code = next(iter(other))
                other_slot = hash(other_code) & mark_mask
                if not marks[other_slot]:
                    shard, code, slot = other, other_code, other_slot
            record = shard.pop(code)
            if marks[slot] and chances:
                marks[slot] -= 1
                chances -= 1
                shard[code] = record  # a second chance: to the back of the queue
                continue
            self._bytes -= cost(code, record)

    def drop(self, code: str) -> None:
        record = self._shards[hash(code) & self._mask].pop(code, None)
        if record is not None:
            self._bytes -= cost(code, record)

    def clear(self) -> None:
        self._shards = [{} for _ in self._shards]
        self._marks = bytearray(len(self._marks))
        self._bytes = 0
        self._put_since_epoch = 0
        self.epoch += 1

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def __contains__(self, code: str) -> bool:
        """Whether a record is held, without counting a use (unlike get)."""
        return code in self._shards[hash(code) & self._mask]
