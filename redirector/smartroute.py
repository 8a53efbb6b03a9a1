"""The redirect's smart-link step: for a link that has rules, variants or an expiry, which destination
this viewer gets (or that the link has expired). Plain links never come here (redirect.py tests
`link.smart is None` and goes on).

Order: expiry by time; the first matching rule; else the sticky variant; else the link's `url`; then, for
a link with `max_clicks`, the exact cross-server counter (a GET takes a click, a HEAD only looks). The
pure decisions are smartlinks.py's; this module gathers the facts they need, only when a link asks."""

from __future__ import annotations

from functools import lru_cache

from core.links import Link, Smart, Target
from redirector.clicklimit import ClickLimit
from redirector.devices import classify
from redirector.geo import CountryLookup
from redirector.smartlinks import NO_VARIANT, first_match, pick_variant, time_expired, variant_point

# User agents classified per worker (a dictionary lookup for a repeated agent; bounded).
AGENT_MEMO_ENTRIES = 16_384
# Outcome for an expired link: the caller answers 410 `expired`, or 302 to `expired_url`.
EXPIRED = None


class SmartRouter:
    def __init__(self, limit: ClickLimit, countries: CountryLookup) -> None:
        self._limit = limit
        self._countries = countries
        self._agent = lru_cache(maxsize=AGENT_MEMO_ENTRIES)(classify)

    async def route(
        self,
        link: Link,
        smart: Smart,
        is_head: bool,
        now_ms: int,
        user_agent: str,
        ip: str,
        ip_hash: int,
        header_country: str,
    ) -> tuple[Link | Target | None, int]:
        """(destination, variant index or -1); destination EXPIRED (None) when the link has expired.
        Raises RedisError/OSError when the click counter of a limited link cannot be asked."""
        if time_expired(smart, now_ms):
            return EXPIRED, NO_VARIANT
        target: Link | Target = link
        variant = NO_VARIANT
        index = -1
        if smart.rules:
            country = header_country
            countries = self._countries
            if not country and smart.country_rules and (countries.loaded or await countries.ready()):
                lookup = countries.lookup
                index = first_match(smart.rules, lambda: self._agent(user_agent), lambda: lookup(ip))
            else:
                index = first_match(smart.rules, lambda: self._agent(user_agent), lambda: country)
            if index >= 0:
                target = smart.rules[index].target
        if index < 0 and smart.variants:
            variant = pick_variant(smart.weight_bounds, variant_point(link.code, ip_hash, user_agent))
            target = smart.variants[variant].target
        if smart.max_clicks:
            limit = self._limit
            allowed = await (
                limit.left(link.code, smart.max_clicks)
                if is_head
                else limit.take(link.code, smart.max_clicks)
            )
            if not allowed:
                return EXPIRED, NO_VARIANT
        return target, variant
