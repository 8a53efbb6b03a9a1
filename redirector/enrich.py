"""What the ingester adds to a click, off the hot path: bot and preview detection, device class, browser
family, os (the maintained `ua-parser`, see useragent.py), referer host, country, and the unique-click
flag.

The ingester enriches a batch column by column: user-agent traits are memoised (bounded LRU) per user
agent, countries per header value and per IP prefix, referer hosts per referer, and each column is one
C-level map over the batch, so a batch pays the regular expressions once per distinct value and no Python
frame per click. The unique flag costs one Redis pipeline per batch (see UniqueClicks). Bots are never
dropped, only flagged with a reason, so the numbers can be corrected later.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, compress, repeat
from operator import floordiv, itemgetter
from urllib.parse import urlsplit

import crawleruseragents
import redis
from geoip2fast import GeoIP2Fast

from core.clickid import ID_CHARS
from core.keys import Keys
from core.validate import is_country
from redirector.useragent import UserAgents

# Link-preview fetchers of chat and social apps: they fetch the link when it is shared, not when a person
# taps it. Checked before the crawler dataset (which lists several of them too) to give a precise reason.
PREVIEW_FETCHERS = (
    ("facebookexternalhit", "facebook"),
    ("Facebot", "facebook"),
    ("Twitterbot", "twitter"),
    ("Slackbot", "slack"),
    ("Slack-ImgProxy", "slack"),
    ("WhatsApp/", "whatsapp"),
    ("TelegramBot", "telegram"),
    ("Discordbot", "discord"),
    ("LinkedInBot", "linkedin"),
    ("SkypeUriPreview", "skype"),
    ("Pinterestbot", "pinterest"),
    ("redditbot", "reddit"),
    ("Snap URL Preview", "snapchat"),
    ("Iframely", "iframely"),
    ("Embedly", "embedly"),
    ("vkShare", "vk"),
    ("Mastodon/", "mastodon"),
    ("Google-PageRenderer", "google"),
)
# Patterns per combined regular expression: one search tells "some crawler"; the chunk then names it.
CRAWLER_CHUNK = 25
# Distinct values remembered per process (a few MB at most).
UA_CACHE_SIZE = 50_000
PREFIX_CACHE_SIZE = 100_000
COUNTRY_CACHE_SIZE = 1_000  # header values: the ~250 codes and the odd malformed one
REFERER_CACHE_SIZE = 50_000
# geoip2fast's file with IPv4 and IPv6 networks (country level), shipped inside the package.
GEOIP_DATA_FILE = "geoip2fast-ipv6.dat.gz"


@dataclass(frozen=True, slots=True)
class Traits:
    """What a user agent says about the client."""

    is_bot: bool
    bot_reason: str  # "" for people; "preview:<app>", "crawler:<pattern>", "no_user_agent", "head"
    device: str  # mobile, tablet, desktop, bot, other
    browser: str  # ua-parser's family names (useragent.py)
    os: str


class BotPatterns:
    """The crawler user-agent dataset (PyPI `crawler-user-agents`), compiled once per process."""

    def __init__(self) -> None:
        patterns = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
        self._chunks = [
            (re.compile("|".join(patterns[i : i + CRAWLER_CHUNK])), patterns[i : i + CRAWLER_CHUNK])
            for i in range(0, len(patterns), CRAWLER_CHUNK)
        ]

    def match(self, user_agent: str) -> str | None:
        """The first dataset pattern that matches (backslashes dropped, for a readable reason), or None."""
        for combined, patterns in self._chunks:
            if combined.search(user_agent):
                for pattern in patterns:
                    if re.search(pattern, user_agent):
                        return pattern.replace("\\", "")
        return None


def classify(user_agent: str, bots: BotPatterns, agents: UserAgents) -> Traits:
    """Pure: the traits of one user agent (HEAD is applied by the caller, it is not in the agent)."""
    agent = user_agent.strip()
    reason = ""
    if not agent:
        reason = "no_user_agent"
    else:
        for token, app in PREVIEW_FETCHERS:
            if token in agent:
                reason = f"preview:{app}"
                break
        else:
            pattern = bots.match(agent)
            if pattern is not None:
                reason = f"crawler:{pattern}"
    described = agents.describe(agent)
    return Traits(
        is_bot=bool(reason),
        bot_reason=reason,
        device="bot" if reason else described.device,
        browser=described.browser,
        os=described.os,
    )


def referer_host(referer: str) -> str:
    """The referring site's host, lower case, without "www."; "" when absent or unparsable."""
    if not referer:
        return ""
    try:
        host = urlsplit(referer.strip()).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def _trusted_country(stored: str) -> str:
    return stored if is_country(stored) else ""


def _encoded(function: Callable[[str], str]) -> Callable[[str], bytes]:
    return lambda value: function(value).encode()


class Enricher:
    """Memoised enrichment; one per ingest process (not thread-shared: each consumer makes its own).

    The ingester calls the column methods once per batch: they map a memoised function over whole columns
    (C-level iteration, no Python frame per click), so a batch pays for its distinct values only."""

    def __init__(
        self,
        geoip: GeoIP2Fast | None = None,
        bots: BotPatterns | None = None,
        agents: UserAgents | None = None,
    ) -> None:
        self._geoip = geoip or GeoIP2Fast(geoip2fast_data_file=GEOIP_DATA_FILE)
        bots = bots or BotPatterns()
        agents = agents or UserAgents()
        self._traits = lru_cache(maxsize=UA_CACHE_SIZE)(lambda agent: classify(agent, bots, agents))
        self._agent_row = lru_cache(maxsize=UA_CACHE_SIZE)(self._agent_row_of)
        self._head_row = lru_cache(maxsize=UA_CACHE_SIZE)(self._head_row_of)
        self._prefix_country = lru_cache(maxsize=PREFIX_CACHE_SIZE)(self._lookup_country)
        self.referer_host = lru_cache(maxsize=REFERER_CACHE_SIZE)(referer_host)
        # The column methods' memos hold the values UTF-8 encoded (see agent_columns).
        self._trusted_country_utf8 = lru_cache(maxsize=COUNTRY_CACHE_SIZE)(_encoded(_trusted_country))
        self._prefix_country_utf8 = lru_cache(maxsize=PREFIX_CACHE_SIZE)(_encoded(self._prefix_country))
        self._referer_host_utf8 = lru_cache(maxsize=REFERER_CACHE_SIZE)(_encoded(self.referer_host))

    def traits(self, user_agent: str, is_head: bool) -> Traits:
        found = self._traits(user_agent)
        if is_head and not found.is_bot:
            # HEAD is what link-preview fetchers send: recorded, flagged, never billable.
            return Traits(True, "head", "bot", found.browser, found.os)
        return found

    def country(self, stored: str, ip_prefix: str) -> str:
        """The country from the trusted header when the redirect had one, else from the IP prefix."""
        return _trusted_country(stored) or self._prefix_country(ip_prefix)

    # --- whole columns, for the ingester ----------------------------------------------------------
    # Strings come UTF-8 encoded, as the ClickHouse insert sends them: memoised with the value, so the
    # insert does not encode them again for every click (clickhouse-driver writes bytes as they are).

    def agent_columns(self, user_agents: Sequence[str], heads: Sequence[bool]) -> list[list]:
        """The columns is_bot (0/1), bot_reason, device, browser, os and user_agent of a batch."""
        rows = list(map(self._agent_row, user_agents))
        if any(heads):
            for index in compress(range(len(rows)), heads):
                rows[index] = self._head_row(rows[index])
        return [list(map(itemgetter(column), rows)) for column in range(6)]

    def countries(self, stored: Sequence[str], ip_prefixes: Sequence[str]) -> list[bytes]:
        trusted = list(map(self._trusted_country_utf8, stored))
        if all(trusted):
            return trusted
        located = map(self._prefix_country_utf8, ip_prefixes)
        return [header or prefix for header, prefix in zip(trusted, located, strict=True)]

    def referer_hosts(self, referers: Sequence[str]) -> list[bytes]:
        return list(map(self._referer_host_utf8, referers))

    def _agent_row_of(self, user_agent: str) -> tuple[int, bytes, bytes, bytes, bytes, bytes]:
        found = self._traits(user_agent)
        texts = (found.bot_reason, found.device, found.browser, found.os, user_agent)
        return (int(found.is_bot), *(text.encode() for text in texts))

    @staticmethod
    def _head_row_of(row: tuple) -> tuple:
        # As traits(): a HEAD request is a bot ("head") unless the agent names one already.
        return row if row[0] else (1, b"head", b"bot", *row[3:])

    def _lookup_country(self, ip_prefix: str) -> str:
        if not ip_prefix:
            return ""
        try:
            network = ipaddress.ip_network(ip_prefix, strict=False)
        except ValueError:
            return ""
        code = self._geoip.lookup(str(network.network_address)).country_code
        return code if is_country(code) else ""

    def cache_info(self) -> dict[str, int]:
        """Hits per cache (tests and the benchmark use it to show the memoisation works)."""
        return {"traits": self._traits.cache_info().hits, "country": self._prefix_country.cache_info().hits}


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
  local key, names, tags = KEYS[shard], {{}}, {{}}
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
CODE_CACHE_SIZE = 100_000
# Each hash gets one marker field ("") this long when created: longer than hash-max-listpack-value (64 by
# default), it makes Redis store the hash as a hash table from the start. As a listpack (its first 128-512
# fields), every HMGET and HSET field scans the whole hash: 2.2x the Redis CPU per click in the benchmark
# (4.9 vs 2.2 us). A hash past 512 fields is a hash table anyway, so this costs memory only on small hours.
LISTPACK_BYPASS_BYTES = 65
_IP_BYTES = struct.Struct(">Q").pack
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
            shard_byte=2 * DIGEST_BYTES,
            bypass=LISTPACK_BYPASS_BYTES,
        )
        self._script = client.register_script(script)
        self._agent_digest = lru_cache(maxsize=UA_CACHE_SIZE)(_digest)
        self._code_digest = lru_cache(maxsize=CODE_CACHE_SIZE)(_digest)

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
        if min(hours) != max(hours):  # rare: a batch across an hour boundary; sorted, it is in runs
            order = sorted(range(count), key=hours.__getitem__)
            columns = (codes, ts_ms, ip_hashes, user_agents, click_ids, hours)
            codes, ts_ms, ip_hashes, user_agents, click_ids, hours = (
                [column[i] for i in order] for column in columns
            )
        links = list(map(self._code_digest, codes))
        ips = list(map(_IP_BYTES, ip_hashes))
        agents = list(map(self._agent_digest, user_agents))
        # Rounded up, so that an hour's keys are re-extended once a minute, not at every call.
        expire_from_s = -(-now_s // EXPIRE_STEP_S) * EXPIRE_STEP_S
        with self._redis.pipeline(transaction=False) as pipe:
            start = 0
            while start < count:
                hour = hours[start]
                end = bisect_right(hours, hour, start, min(count, start + UNIQUE_CHUNK))
                parts = zip(links[start:end], ips[start:end], agents[start:end], strict=True)
                fields = b"".join(chain.from_iterable(parts))
                ids = "".join(click_ids[start:end])
                if len(ids) != (end - start) * ID_CHARS or not ids.isascii():
                    raise ValueError("click ids must be valid: see core.clickid")
                expire_at = max((hour + 1) * HOUR_S, expire_from_s) + UNIQUE_GRACE_S
                self._script(keys=self._shard_keys(hour), args=[expire_at, fields, ids], client=pipe)
                start = end
            replies = pipe.execute()
        flags = list(b"".join(replies).translate(_FLAGS))
        if order is None:
            return flags
        unsorted = [0] * count
        for index, flag in zip(order, flags, strict=True):
            unsorted[index] = flag
        return unsorted

    def _shard_keys(self, hour: int) -> list[str]:
        return [self._keys.unique_clicks(hour, shard) for shard in range(UNIQUE_SHARDS)]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest()
