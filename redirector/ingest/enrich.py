"""What the ingester adds to a click, off the hot path: bot and preview detection, device class, browser
family, os (the maintained `ua-parser`, see useragent.py), referer host, country, (the unique-click flag is
unique.py's).

The ingester enriches a batch column by column: user-agent traits are memoised (bounded, memo.py) per user
agent, countries per header value and per IP prefix, referer hosts per referer, and each column is one
C-level map over the batch, so a batch pays the regular expressions once per distinct value and no Python
frame per click. The unique flag costs one Redis pipeline per batch (see UniqueClicks). Bots are never
dropped, only flagged with a reason, so the numbers can be corrected later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from operator import itemgetter
from urllib.parse import urlsplit

import crawleruseragents
from geoip2fast import GeoIP2Fast

from core.geo import GEOIP_DATA_FILE
from core.validate import is_country
from redirector.ingest.memo import Memo
from redirector.ingest.useragent import UserAgents

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
        self._agent_row = Memo(self._agent_row_of, UA_CACHE_SIZE)
        self._head_row = lru_cache(maxsize=UA_CACHE_SIZE)(self._head_row_of)
        self._prefix_country = lru_cache(maxsize=PREFIX_CACHE_SIZE)(self._lookup_country)
        self.referer_host = lru_cache(maxsize=REFERER_CACHE_SIZE)(referer_host)
        # The column methods' memos hold the values UTF-8 encoded (see agent_columns).
        self._trusted_country_utf8 = Memo(_encoded(_trusted_country), COUNTRY_CACHE_SIZE)
        self._prefix_country_utf8 = Memo(_encoded(self._prefix_country), PREFIX_CACHE_SIZE)
        self._referer_host_utf8 = Memo(_encoded(self.referer_host), REFERER_CACHE_SIZE)

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
        rows = self._agent_row.column(user_agents)
        if any(heads):
            for index in compress(range(len(rows)), heads):
                rows[index] = self._head_row(rows[index])
        return [list(map(itemgetter(column), rows)) for column in range(6)]

    def countries(self, stored: Sequence[str], ip_prefixes: Sequence[str]) -> list[bytes]:
        trusted = self._trusted_country_utf8.column(stored)
        if all(trusted):
            return trusted
        located = map(self._prefix_country_utf8.__getitem__, ip_prefixes)
        return [header or prefix for header, prefix in zip(trusted, located, strict=True)]

    def referer_hosts(self, referers: Sequence[str]) -> list[bytes]:
        return self._referer_host_utf8.column(referers)

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
