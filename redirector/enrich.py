"""What the ingester adds to a click, off the hot path: bot and preview detection, device class, browser
family, os, referer host, country, and the unique-click flag.

The per-click work is a few dict look-ups: user-agent traits are memoised per user agent, countries per
IP prefix, referer hosts per referer, so a batch pays the regular expressions once per distinct value.
Bots are never dropped, only flagged with a reason, so the numbers can be corrected later.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import crawleruseragents
import redis
from geoip2fast import GeoIP2Fast

from clicktrail.keys import Keys

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
REFERER_CACHE_SIZE = 50_000
# geoip2fast's file with IPv4 and IPv6 networks (country level), shipped inside the package.
GEOIP_DATA_FILE = "geoip2fast-ipv6.dat.gz"
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")

# (token in the user agent, name), first match wins: in-app browsers before the engines they embed,
# Edge/Opera/Samsung before Chrome, Chrome before Safari (Chrome's agent says "Safari" too).
_BROWSERS = (
    (("Instagram",), "Instagram"),
    (("FBAN/", "FBAV/", "FB_IAB/", "MetaIAB"), "Facebook"),
    (("BytedanceWebview", "musical_ly", "TikTok"), "TikTok"),
    (("Snapchat",), "Snapchat"),
    (("Edg/", "EdgA/", "EdgiOS/"), "Edge"),
    (("OPR/", "Opera"), "Opera"),
    (("SamsungBrowser/",), "Samsung Internet"),
    (("YaBrowser/",), "Yandex"),
    (("Firefox/", "FxiOS/"), "Firefox"),
    (("CriOS/", "Chrome/"), "Chrome"),
    (("Safari/",), "Safari"),
)
_SYSTEMS = (
    (("iPhone", "iPad", "iPod"), "iOS"),
    (("Android",), "Android"),
    (("Windows NT", "Windows Phone"), "Windows"),
    (("CrOS",), "ChromeOS"),
    (("Macintosh", "Mac OS X"), "macOS"),
    (("Linux", "X11"), "Linux"),
)


@dataclass(frozen=True, slots=True)
class Traits:
    """What a user agent says about the client."""

    is_bot: bool
    bot_reason: str  # "" for people; "preview:<app>", "crawler:<pattern>", "no_user_agent", "head"
    device: str  # mobile, tablet, desktop, bot, other
    browser: str
    os: str


def _first(user_agent: str, table: tuple[tuple[tuple[str, ...], str], ...]) -> str:
    for tokens, name in table:
        if any(token in user_agent for token in tokens):
            return name
    return "Other"


def device_class(user_agent: str) -> str:
    android_tablet = "Android" in user_agent and "Mobile" not in user_agent
    if "iPad" in user_agent or "Tablet" in user_agent or android_tablet:
        return "tablet"
    if any(token in user_agent for token in ("Mobile", "iPhone", "iPod", "Android", "Windows Phone")):
        return "mobile"
    if any(token in user_agent for token in ("Windows NT", "Macintosh", "X11", "CrOS")):
        return "desktop"
    return "other"


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


def classify(user_agent: str, bots: BotPatterns) -> Traits:
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
    return Traits(
        is_bot=bool(reason),
        bot_reason=reason,
        device="bot" if reason else device_class(agent),
        browser=_first(agent, _BROWSERS),
        os=_first(agent, _SYSTEMS),
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


class Enricher:
    """Memoised enrichment; one per ingest process (not thread-shared: each consumer makes its own)."""

    def __init__(self, geoip: GeoIP2Fast | None = None, bots: BotPatterns | None = None) -> None:
        self._geoip = geoip or GeoIP2Fast(geoip2fast_data_file=GEOIP_DATA_FILE)
        bots = bots or BotPatterns()
        self._traits = lru_cache(maxsize=UA_CACHE_SIZE)(lambda agent: classify(agent, bots))
        self._prefix_country = lru_cache(maxsize=PREFIX_CACHE_SIZE)(self._lookup_country)
        self.referer_host = lru_cache(maxsize=REFERER_CACHE_SIZE)(referer_host)

    def traits(self, user_agent: str, is_head: bool) -> Traits:
        found = self._traits(user_agent)
        if is_head and not found.is_bot:
            # HEAD is what link-preview fetchers send: recorded, flagged, never billable.
            return Traits(True, "head", "bot", found.browser, found.os)
        return found

    def country(self, stored: str, ip_prefix: str) -> str:
        """The country from the trusted header when the redirect had one, else from the IP prefix."""
        if stored and _COUNTRY_RE.match(stored):
            return stored
        return self._prefix_country(ip_prefix) if ip_prefix else ""

    def _lookup_country(self, ip_prefix: str) -> str:
        try:
            network = ipaddress.ip_network(ip_prefix, strict=False)
        except ValueError:
            return ""
        code = self._geoip.lookup(str(network.network_address)).country_code
        return code if _COUNTRY_RE.match(code or "") else ""

    def cache_info(self) -> dict[str, int]:
        """Hits per cache (tests and the benchmark use it to show the memoisation works)."""
        return {"traits": self._traits.cache_info().hits, "country": self._prefix_country.cache_info().hits}


# One Redis round trip per chunk. KEYS: one hash per (link, hour). ARGV per key: expire-at (unix s), n,
# then n pairs (visitor digest, click tag). A visitor's first click in the hour is stored as the field's
# value; a click is unique iff the stored value is its own tag, so a redelivered click gets the same
# answer as the first time, and two ingesters racing on one visitor cannot both win (HSETNX is atomic).
_FIRST_CLICK_LUA = """
local out, a = {}, 1
for i = 1, #KEYS do
  local key, expire_at, n = KEYS[i], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local field, tag = ARGV[a], ARGV[a + 1]
    a = a + 2
    if redis.call('HSETNX', key, field, tag) == 1 or redis.call('HGET', key, field) == tag then
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  if redis.call('EXPIRETIME', key) < expire_at then
    redis.call('EXPIREAT', key, expire_at)
  end
end
return out
"""
HOUR_S = 3600
# How long a (link, hour) set outlives its hour, and the last time a click of it was processed. The flag
# is exact while a click reaches the ingester within this much of its hour's end; a click first processed
# later (a longer ClickHouse outage, a spool replayed after this long) may count as unique a second time,
# never the other way round. Memory: about 60 bytes per unique visitor-hour for (1 h + this).
UNIQUE_GRACE_S = 2 * 3600
# Clicks per script call: bounds how long one call holds Redis (the recorder writes there too).
UNIQUE_CHUNK = 500
# The stored tag: the click id's last 11 characters (its 64-bit MAC), enough to tell two clicks apart.
TAG_CHARS = 11


@dataclass(frozen=True, slots=True)
class Visit:
    code: str
    ts_ms: int
    ip_hash: int
    user_agent: str
    click_id: str


class UniqueClicks:
    """The unique-click flag: the first human click of an (ip_hash, user agent) on a link in a clock hour
    (UTC) is unique; later ones in that hour are not. Exact under redelivery and across ingesters (see
    the script above); bounded by UNIQUE_GRACE_S."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._keys = keys
        self._script = client.register_script(_FIRST_CLICK_LUA)

    def first_in_hour(self, visits: list[Visit], now_s: int) -> list[bool]:
        out: list[bool] = []
        for start in range(0, len(visits), UNIQUE_CHUNK):
            out.extend(self._chunk(visits[start : start + UNIQUE_CHUNK], now_s))
        return out

    def _chunk(self, visits: list[Visit], now_s: int) -> list[bool]:
        by_key: dict[tuple[str, int], list[int]] = {}
        for index, visit in enumerate(visits):
            by_key.setdefault((visit.code, visit.ts_ms // 1000 // HOUR_S), []).append(index)
        keys, args, order = [], [], []
        for (code, hour), indexes in by_key.items():
            keys.append(self._keys.unique_clicks(code, hour))
            args += [max((hour + 1) * HOUR_S, now_s) + UNIQUE_GRACE_S, len(indexes)]
            for index in indexes:
                visit = visits[index]
                digest = hashlib.blake2b(
                    f"{visit.ip_hash}\0{visit.user_agent}".encode(), digest_size=8
                ).digest()
                args += [digest, visit.click_id[-TAG_CHARS:]]
                order.append(index)
        flags = [False] * len(visits)
        for index, flag in zip(order, self._script(keys=keys, args=args), strict=True):
            flags[index] = bool(flag)
        return flags
