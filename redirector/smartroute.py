"""The redirect's smart-link step: for a link that has rules, variants or an expiry, which destination
this viewer gets. Plain links never come here (redirect.py tests `link.smart is None` and goes on).

Order (redirect.py `_route`): expiry by time; the first matching rule; else the sticky variant; else the
link's `url`; then, for a link with `max_clicks`, the exact cross-server counter (a GET takes a click, a
HEAD only looks). The pure decisions are smartlinks.py's; this module gathers the facts they need, only
when a link asks."""

from __future__ import annotations

from functools import lru_cache

from core.links import Link, Smart, Target
from redirector.clicklimit import ClickLimit
from redirector.devices import classify
from redirector.geo import CountryLookup
from redirector.smartlinks import NO_VARIANT, first_match, pick_variant, variant_point

# User agents classified per worker (a dictionary lookup for a repeated agent; bounded).
AGENT_MEMO_ENTRIES = 16_384


class SmartRouter:
    """Synchronous on the common path (`choose`): the redirect awaits only what needs I/O, the first load
    of the country database (`countries.ready()`) and the click counter (`count`)."""

    def __init__(self, limit: ClickLimit, countries: CountryLookup) -> None:
        self._limit = limit
        self.countries = countries
        self._agent = lru_cache(maxsize=AGENT_MEMO_ENTRIES)(classify)

    def choose(
        self, link: Link, smart: Smart, user_agent: str, ip: str, ip_hash: int, header_country: str
    ) -> tuple[Link | Target, int]:
        """(destination, variant index or -1): the first matching rule, else the viewer's variant, else
        the link itself. The country is the header's, else (for a link with country rules, once the
        database is ready) the offline lookup's, looked up only if a rule gets that far."""
        index = -1
        if smart.rules:
            agent = self._agent
            if header_country or not smart.country_rules:
                index = first_match(smart.rules, lambda: agent(user_agent), lambda: header_country)
            else:
                lookup = self.countries.lookup  # "" for every address if the database could not load
                index = first_match(smart.rules, lambda: agent(user_agent), lambda: lookup(ip))
            if index >= 0:
                return smart.rules[index].target, NO_VARIANT
        if smart.variants:
            variant = pick_variant(smart.weight_bounds, variant_point(link.code, ip_hash, user_agent))
            return smart.variants[variant].target, variant
        return link, NO_VARIANT

    async def count(self, code: str, max_clicks: int, is_head: bool) -> bool:
        """Whether a limited link still lets this click through (a GET takes one, a HEAD only looks).
        Raises RedisError/OSError when the counter cannot be asked."""
        limit = self._limit
        return await (limit.left(code, max_clicks) if is_head else limit.take(code, max_clicks))
