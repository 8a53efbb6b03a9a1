"""The per-worker link cache of the redirect path, sized in bytes, with a time to live, and the "no such
code" answers it remembers too.

Two tiers: every cached link is packed (packed.py: about 200 bytes a link, so a few hundred MiB hold
millions), and up to `HOT_LINKS` links are also kept decoded (a link just put, or used twice since that
tier was last emptied), so that a popular link is not decoded again on every request. A link is fresh
until its TTL ends or until `expire_all`; a link past that is still served by `stale` while Redis cannot
be asked."""

from __future__ import annotations

from core.links import Link
from redirector.packed import PackedLinks, pack, unpack

# Decoded links kept besides their packed records: real traffic is skewed (a few links get most
# requests), and decoding one costs about a microsecond. About 700 bytes each, outside the byte budget, and
# never more than HOT_RECORD_BYTES of packed records in all: a link near the size limit (a smart link of
# many rules, 64 KB packed) takes about 136 KB decoded, and 4,096 of them took a worker from 130 to 690 MB.
# Emptied when full rather than kept in LRU order: an ordered dict's upkeep on every uniform-traffic miss
# cost more than decoding again the few popular links that an emptying drops (they return at once).
# An entry is [expires_ms, link, the packed tier's epoch when the link was last marked used there]: a hit
# marks the packed record used again only when that epoch has passed (often enough that the packed tier's
# sweep always finds it marked), so popular links served from here are not dropped below.
HOT_LINKS = 4096
HOT_RECORD_BYTES = 8 * 2**20
# A link decoded from the packed tier joins the decoded tier only on its second use since the decoded tier
# was last emptied: under uniform traffic over a million links, keeping every decoded link cost about
# 1.8 us a request (allocating, then freeing 4,096 links at each emptying) and saved nothing. Which codes
# were used is a byte per hash slot holding the number of the decoded tier's current period (1-255), so
# nothing is ever zeroed; two codes sharing a slot only let one in a use early.
SEEN_SLOTS = 1 << 20
_SEEN_MASK = SEEN_SLOTS - 1


# Codes whose latest change is remembered one by one; past this many, all of them count as changed.
CHANGES_KEPT = 4_096


class LinkCache:
    """Invalidation drops a code from both tiers whatever it holds."""

    __slots__ = (
        "_changed",
        "_changed_floor",
        "_changes",
        "_fresh_after_ms",
        "_hot",
        "_hot_bytes",
        "_hot_links",
        "_max_bytes",
        "_now_ms",
        "_packed",
        "_period",
        "_seen",
        "_ttl_ms",
        "hits",
        "misses",
    )  # fmt: skip

    def __init__(self, max_bytes: int, ttl_ms: int, hot_links: int = HOT_LINKS) -> None:
        self._hot: dict[str, list] = {}  # code -> [expires_ms, link, epoch, its packed record's bytes]
        self._hot_bytes = 0  # the packed bytes of the decoded tier's links
        self._hot_links = hot_links if max_bytes > 0 else 0
        self._max_bytes = max_bytes
        self._packed = PackedLinks(max_bytes)
        self._seen = bytearray(SEEN_SLOTS if self._hot_links else 0)
        self._period = 1  # never 0: the slots start at 0
        self._ttl_ms = ttl_ms
        self._now_ms = 0  # the latest time the cache was told (expire_all uses it: no second clock)
        self._fresh_after_ms = -1  # entries fetched at or before this are not fresh (expire_all)
        # Changes (invalidate, clear, expire_all) are numbered, so a read from Redis that began before one
        # is not cached after it (`put(read_at=)`): the watcher may drop a code while a read of its old
        # record is in flight, and that record must not outlive the drop.
        self._changes = 0
        self._changed: dict[str, int] = {}  # code -> its latest change, the most recent CHANGES_KEPT
        self._changed_floor = 0  # a read that began before this change number is treated as stale
        self.hits = 0
        self.misses = 0

    @property
    def changes(self) -> int:
        """The change counter, to note before reading links from Redis (`put(read_at=)`)."""
        return self._changes

    def get(self, code: str, now_ns: int, counted: bool = True) -> tuple[bool, Link | None]:
        """(hit, link). `counted=False`: the caller counts the outcome itself (`hits`, `misses`)."""
        now_ms = now_ns // 1_000_000
        if now_ms > self._now_ms:
            self._now_ms = now_ms
        packed = self._packed
        entry = self._hot.get(code)
        if entry is None:
            at = hash(code)
            record = packed.find(code, at)
            if record is None:
                self.misses += counted
                return False, None
            expires_ms, link = unpack(code, record)
            if self._hot_links:
                slot = at & _SEEN_MASK
                if self._seen[slot] == self._period:
                    self._keep_hot(code, [expires_ms, link, packed.epoch, len(record)])
                else:
                    self._seen[slot] = self._period
        else:
            expires_ms, link = entry[0], entry[1]
            if entry[2] != packed.epoch:  # no allocation: the epoch's int object is shared
                packed.get(code)
                entry[2] = packed.epoch
        if expires_ms < now_ms or expires_ms - self._ttl_ms <= self._fresh_after_ms:
            self.misses += counted
            return False, None
        self.hits += counted
        return True, link

    def put(self, code: str, link: Link | None, now_ns: int, read_at: int | None = None) -> None:
        """Cache `link`; with `read_at` (`changes` before it was read), not if the code changed since."""
        if self._max_bytes <= 0:
            return
        if read_at is not None and (read_at < self._changed_floor or self._changed.get(code, -1) > read_at):
            return
        now_ms = now_ns // 1_000_000
        self._now_ms = max(self._now_ms, now_ms)
        expires_ms = now_ms + self._ttl_ms
        packed = self._packed
        record = pack(link, expires_ms)
        packed.put(code, record)
        replaced = self._hot.pop(code, None)
        if replaced is not None:  # a refresh of a hot link: its bytes are counted once
            self._hot_bytes -= replaced[3]
        self._keep_hot(code, [expires_ms, link, packed.epoch, len(record)])

    def _keep_hot(self, code: str, entry: list) -> None:
        hot = self._hot
        if len(hot) >= self._hot_links or self._hot_bytes + entry[3] > HOT_RECORD_BYTES:
            if self._hot_links <= 0:
                return
            hot.clear()
            self._hot_bytes = 0
            self._period = self._period % 255 + 1
        hot[code] = entry
        self._hot_bytes += entry[3]

    def stale(self, code: str) -> Link | None:
        """A cached link however old: served only while Redis cannot be asked."""
        entry = self._hot.get(code)
        if entry is not None:
            return entry[1]
        record = self._packed.get(code)
        return None if record is None else unpack(code, record)[1]

    def expire_all(self) -> None:
        """Keep the entries (as stale fallbacks) but make every one fresh-checked again: called when the
        invalidation channel reconnects, since messages sent meanwhile were lost."""
        self._fresh_after_ms = self._now_ms
        self._change_all()

    def invalidate(self, code: str) -> None:
        entry = self._hot.pop(code, None)
        if entry is not None:
            self._hot_bytes -= entry[3]
        self._packed.drop(code)
        self._changes += 1
        changed = self._changed
        if len(changed) >= CHANGES_KEPT:
            self._change_all()  # forget the list: every read in flight counts as stale instead
        else:
            changed[code] = self._changes

    def clear(self) -> None:
        self._hot.clear()
        self._hot_bytes = 0
        self._period = self._period % 255 + 1  # an emptying: earlier uses no longer count
        self._packed.clear()
        self._change_all()

    def _change_all(self) -> None:
        self._changes += 1
        self._changed.clear()
        self._changed_floor = self._changes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def bytes(self) -> int:
        """The packed records' share of the budget (the hot tier is outside it)."""
        return self._packed.bytes

    def __len__(self) -> int:
        return len(self._packed)
