"""The per-worker link cache of the redirect path (LRU, with a time to live), and the "no such code"
answers it remembers too."""

from __future__ import annotations

from collections import OrderedDict

from core.links import Link


class LinkCache:
    """Bounded LRU of resolved links with a TTL. Misses (None) are cached too, so a flood of unknown codes
    does not become a flood of Redis reads; invalidation drops an entry whatever it holds."""

    __slots__ = ("_entries", "_max_entries", "_ttl_ns", "hits", "misses")

    def __init__(self, max_entries: int, ttl_ms: int) -> None:
        self._entries: OrderedDict[str, tuple[int, Link | None]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_ns = ttl_ms * 1_000_000
        self.hits = 0
        self.misses = 0

    def get(self, code: str, now_ns: int) -> tuple[bool, Link | None]:
        entry = self._entries.get(code)
        if entry is None or entry[0] < now_ns:
            self.misses += 1
            return False, None
        self.hits += 1
        self._entries.move_to_end(code)
        return True, entry[1]

    def put(self, code: str, link: Link | None, now_ns: int) -> None:
        if self._max_entries <= 0:
            return
        entries = self._entries
        entries[code] = (now_ns + self._ttl_ns, link)
        entries.move_to_end(code)
        if len(entries) > self._max_entries:
            entries.popitem(last=False)

    def stale(self, code: str) -> Link | None:
        """A cached link however old: served only while Redis cannot be asked."""
        entry = self._entries.get(code)
        return None if entry is None else entry[1]

    def expire_all(self) -> None:
        """Keep the entries (as stale fallbacks) but make every one fresh-checked again: called when the
        invalidation channel reconnects, since messages sent meanwhile were lost."""
        for code, (_, link) in self._entries.items():
            self._entries[code] = (0, link)

    def invalidate(self, code: str) -> None:
        self._entries.pop(code, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
