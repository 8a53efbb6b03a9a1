"""The unique-click flag: the first human click of a visitor (IP hash and user agent) on a link in a clock
hour, kept in Redis hashes by a Lua script so that it stays exact under redelivery and across ingesters."""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain, repeat
from operator import floordiv, itemgetter

import redis

from core.clickid import ID_CHARS
from core.keys import Keys
from redirector.ingest.enrich import UA_CACHE_SIZE
from redirector.ingest.memo import Memo

# The unique-click flag. One script call per chunk of clicks of one clock hour, all chunks of a batch in
# one pipeline. KEYS: the hour's UNIQUE_SHARDS hashes. ARGV: expire-at (unix s); the clicks' fields, one
# fixed-size record each (link digest, IP hash, user-agent digest: the link and the visitor); their click
# ids, concatenated. A visitor's first click on a link in the hour is stored as the field's value (the
# click's tag: the last TAG_CHARS of its id); a click is unique iff the stored value is its own tag, so a
# redelivered click gets the same answer as the first time, and two ingesters racing on one visitor
# cannot both win (a script runs alone). Per shard: one HMGET for all its fields, one HSET for the new
# ones, so Redis does a few commands per shard, not one per click. Returns one '1'/'0' per click.
_FIRST_CLICK_LUA = """
local FIELD, ID, TAG, SHARDS = {field}, {id}, {tag}, {shards}
local expire_at, fields, ids = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local n = #ids / ID
local by_shard, out = {{}}, {{}}
for j = 1, n do
  local shard = string.byte(fields, (j - 1) * FIELD + {shard_byte}) % SHARDS + 1
  local list = by_shard[shard]
  if not list then
    list = {{}}
    by_shard[shard] = list
  end
  list[#list + 1] = j
end
for shard, list in pairs(by_shard) do
  -- One key given (a cluster: one call per shard, see UniqueClicks): every click of the call is its.
  local key, names, tags = KEYS[#KEYS == 1 and 1 or shard], {{}}, {{}}
  for k, j in ipairs(list) do
    names[k] = string.sub(fields, (j - 1) * FIELD + 1, j * FIELD)
    tags[k] = string.sub(ids, j * ID - TAG + 1, j * ID)
  end
  local stored = redis.call('HMGET', key, unpack(names))
  local won, new = {{}}, {{}}
  for k, j in ipairs(list) do
    local name, tag = names[k], tags[k]
    local first = stored[k] or won[name]
    if not first then
      first = tag
      won[name] = tag
      new[#new + 1] = name
      new[#new + 1] = tag
    end
    out[j] = first == tag and '1' or '0'
  end
  local expires = redis.call('EXPIRETIME', key)  -- -2: no such hash yet
  if #new > 0 then
    if expires == -2 then  -- a value this long makes Redis create a hash table, not a listpack
      new[#new + 1] = ''
      new[#new + 1] = string.rep('-', {bypass})
    end
    redis.call('HSET', key, unpack(new))
  end
  if expires < expire_at then
    redis.call('EXPIREAT', key, expire_at)
  end
end
return table.concat(out, '', 1, n)
"""
HOUR_S = 3600
HOUR_MS = HOUR_S * 1000
# Hashes per hour, by the visitor's IP hash (uniform, unlike link popularity): expiring one never holds
# Redis for long (~1/64 of an hour's visitors), and a chunk still touches each once.
UNIQUE_SHARDS = 64
# How long an hour's set outlives its hour, and the last time a click of it was processed. The flag
# is exact while a click reaches the ingester within this much of its hour's end; a click first processed
# later (a longer ClickHouse outage, a spool replayed after this long) may count as unique a second time,
# never the other way round. Memory: about 85 bytes per unique (link, visitor, hour) (80-89 measured, hash
# table encoding), kept for the hour plus this.
UNIQUE_GRACE_S = 2 * 3600
# The expiry is pushed in steps of this (rounded up): one EXPIREAT per key a minute, not one per call.
EXPIRE_STEP_S = 60
# Clicks per script call: bounds how long one call holds Redis (~1 ms; the recorder writes there too),
# and keeps HSET's arguments (2 per new field, all in one shard at worst) under Lua's unpack limit (~8000).
UNIQUE_CHUNK = 2_000
# The stored tag: the click id's last 11 characters (its 64-bit MAC), enough to tell two clicks apart.
TAG_CHARS = 11
# A field: 8 bytes of link digest, 8 of IP hash (big-endian: its last byte picks the shard), 8 of
# user-agent digest. 64-bit digests: two links or agents of one visitor colliding is negligible.
DIGEST_BYTES = 8
FIELD_BYTES = 3 * DIGEST_BYTES
# The byte of a field that picks its shard: the IP hash's last (the script's `shard_byte`, 0-based here).
SHARD_BYTE_INDEX = 2 * DIGEST_BYTES - 1
CODE_CACHE_SIZE = 100_000
# Each hash gets one marker field ("") this long when created: longer than hash-max-listpack-value (64 by
# default), it makes Redis store the hash as a hash table from the start. As a listpack (its first 128-512
# fields), every HMGET and HSET field scans the whole hash: 2.2x the Redis CPU per click in the benchmark
# (4.9 vs 2.2 us). A hash past 512 fields is a hash table anyway, so this costs memory only on small hours.
LISTPACK_BYPASS_BYTES = 65


@lru_cache(maxsize=16)
def _fields(count: int) -> struct.Struct:
    """The fields of `count` clicks packed in one C call (link digest, IP hash big-endian, agent digest):
    no bytes object per click and per part, as a join of packed parts would make."""
    return struct.Struct(">" + f"{DIGEST_BYTES}sQ{DIGEST_BYTES}s" * count)


_FLAGS = bytes.maketrans(b"01", b"\x00\x01")


class UniqueClicks:
    """The unique-click flag: the first human click of an (ip_hash, user agent) on a link in a clock hour
    (UTC) is unique; later ones in that hour are not. Exact under redelivery and across ingesters (see
    the script above); bounded by UNIQUE_GRACE_S."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        script = _FIRST_CLICK_LUA.format(
            field=FIELD_BYTES,
            id=ID_CHARS,
            tag=TAG_CHARS,
            shards=UNIQUE_SHARDS,
            shard_byte=SHARD_BYTE_INDEX + 1,
            bypass=LISTPACK_BYPASS_BYTES,
        )
        self._script = client.register_script(script)
        self._agent_digest = Memo(_digest, UA_CACHE_SIZE)
        self._code_digest = Memo(_digest, CODE_CACHE_SIZE)

    def first_in_hour(
        self,
        codes: Sequence[str],
        ts_ms: Sequence[int],
        ip_hashes: Sequence[int],
        user_agents: Sequence[str],
        click_ids: Sequence[str],
        now_s: int,
    ) -> list[int]:
        """1 for each click (given column by column) that is unique, else 0; one pipeline per call.
        Click ids must be valid (ID_CHARS long, ASCII), as the ingester's decoding ensures."""
        count = len(click_ids)
        if not count:
            return []
        hours = list(map(floordiv, ts_ms, repeat(HOUR_MS)))
        order = None
        # A batch across an hour boundary is sent in runs of one hour. In stream order (a backlog read
        # after an outage: every batch spans hours) its hours are in order already and the runs are
        # there; otherwise the columns are reordered by hour (a stable sort keeps each visitor's clicks
        # in stream order), in C-level picks: a Python loop per click here cost 0.3 us of the 8.
        if min(hours) != max(hours) and hours != sorted(hours):
            order = sorted(range(count), key=hours.__getitem__)
            pick = itemgetter(*order)
            columns = (codes, ts_ms, ip_hashes, user_agents, click_ids, hours)
            codes, ts_ms, ip_hashes, user_agents, click_ids, hours = (pick(column) for column in columns)
        links = self._code_digest.column(codes)
        agents = self._agent_digest.column(user_agents)
        # Rounded up, so that an hour's keys are re-extended once a minute, not at every call.
        expire_from_s = -(-now_s // EXPIRE_STEP_S) * EXPIRE_STEP_S
        positions: list[int] = []  # on a cluster: the click of each reply byte, see _queue_per_shard
        with self._redis.pipeline(transaction=False) as pipe:
            start = 0
            while start < count:
                hour = hours[start]
                end = bisect_right(hours, hour, start, min(count, start + UNIQUE_CHUNK))
                parts = zip(links[start:end], ip_hashes[start:end], agents[start:end], strict=True)
                fields = _fields(end - start).pack(*chain.from_iterable(parts))
                ids = "".join(click_ids[start:end])
                if len(ids) != (end - start) * ID_CHARS or not ids.isascii():
                    raise ValueError("click ids must be valid: see core.clickid")
                expire_at = max((hour + 1) * HOUR_S, expire_from_s) + UNIQUE_GRACE_S
                if self._keys.cluster:
                    positions += self._queue_per_shard(pipe, hour, fields, ids, expire_at, start)
                else:
                    self._script(keys=self._shard_keys(hour), args=[expire_at, fields, ids], client=pipe)
                start = end
            replies = pipe.execute()
        flags = list(b"".join(replies).translate(_FLAGS))
        if len(flags) != count:
            raise RuntimeError(f"the unique-click script answered {len(flags)} flags for {count} clicks")
        if positions:
            flags = scatter(flags, positions, count)
        if order is None:
            return flags
        return scatter(flags, order, count)

    def _queue_per_shard(
        self, pipe: redis.Redis, hour: int, fields: bytes, ids: str, expire_at: int, start: int
    ) -> list[int]:
        """On a cluster the hour's hashes are spread over the slots and a script touches one slot: one
        call per shard (the same script; with one key every click of the call maps to it), sent as one
        batch per node by the cluster pipeline. Returns the clicks' indexes in the order of the replies."""
        by_shard: dict[int, list[int]] = {}
        for j in range(len(ids) // ID_CHARS):
            by_shard.setdefault(fields[j * FIELD_BYTES + SHARD_BYTE_INDEX] % UNIQUE_SHARDS, []).append(j)
        positions = []
        for shard, members in by_shard.items():
            part = b"".join(fields[j * FIELD_BYTES : (j + 1) * FIELD_BYTES] for j in members)
            part_ids = "".join(ids[j * ID_CHARS : (j + 1) * ID_CHARS] for j in members)
            key = self._keys.unique_clicks(hour, shard)
            # EVAL by name: redis-py's cluster pipeline has no `eval`; routed by the one key.
            pipe.execute_command("EVAL", self._script.script, 1, key, expire_at, part, part_ids)
            positions.extend(start + j for j in members)
        return positions

    def _shard_keys(self, hour: int) -> list[str]:
        return [self._keys.unique_clicks(hour, shard) for shard in range(UNIQUE_SHARDS)]


def scatter(values: Sequence[int], indexes: Iterable[int], count: int) -> list[int]:
    """A list of `count` zeros with `values[k]` at `indexes[k]`, set in one C-level pass (consumed by a
    zero-length deque), not a Python loop per value."""
    out = [0] * count
    indexes = list(indexes)
    if len(indexes) != len(values):  # map() would stop at the shorter one without a word
        raise ValueError(f"scatter: {len(values)} values for {len(indexes)} places")
    deque(map(out.__setitem__, indexes, values), maxlen=0)
    return out


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest()
