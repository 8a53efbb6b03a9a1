"""A link as the redirect may serve it, checked once when it enters a worker's cache (never per request).

Whatever is stored in Redis (a record written before validation was strict, a merchant claim that
changed the click parameter, a hand edit), every 302 must be a well-formed header with exactly one click
id. So before a link is cached:

- a click parameter that is not 1-64 characters of A-Z a-z 0-9 _ . - (a newline in it would make the
  server drop the connection after the click was recorded) falls back to the default `ct_click`;
- a destination with bytes a header may not carry (controls, space, DEL, non-ASCII) has them
  percent-encoded as UTF-8;
- any pair of the destination's query that a server could read as the click parameter is removed
  (querykeys.py), so ours is the only one that leaves;
- and the same for every destination of a smart link (rules, variants, expired_url), whose derived
  fields (variant weight sums, whether a rule names a country) are made right too.

Each correction is returned as a reason, counted in `clicktrail_redirect_fallbacks_total{reason}` each time
the link is read into a worker's cache (resolver.py). A clean link comes back as the very same object."""

from __future__ import annotations

from urllib.parse import quote

import msgspec

from core.links import Link, Smart, planned
from core.validate import DEFAULT_CLICK_PARAM, is_click_param
from redirector.querykeys import strip_from_url

BAD_CLICK_PARAM = "bad_click_param"
BAD_URL_BYTES = "bad_url_bytes"
URL_CARRIED_CLICK_PARAM = "url_carried_click_param"
# A smart link stored without (or with wrong) derived fields (core/links.py `planned`): recomputed.
SMART_PLAN = "smart_plan"
REASONS = (BAD_CLICK_PARAM, BAD_URL_BYTES, URL_CARRIED_CLICK_PARAM, SMART_PLAN)

# Left as they are when encoding a stored URL: printable ASCII except space, so '%' escapes already
# there and the URL's own syntax stay.
_URL_KEEP = "".join(map(chr, range(0x21, 0x7F)))


def header_safe(text: str) -> bool:
    """Printable ASCII without space: what a Location header value may carry as is."""
    return text.isascii() and text.isprintable() and " " not in text


def servable(link: Link) -> tuple[Link, tuple[str, ...]]:
    """The link with a header-safe click parameter and destination (each smart-link destination too),
    and the reasons for each change."""
    url, param, reasons = _servable_destination(link.url, link.click_param)
    smart = link.smart
    if smart is not None:
        smart = planned(smart)
        if smart is not link.smart:
            reasons.append(SMART_PLAN)
        fixed = {}
        for target in smart.targets():
            t_url, t_param, t_reasons = _servable_destination(target.url, target.click_param)
            if t_reasons:
                fixed[id(target)] = msgspec.structs.replace(target, url=t_url, click_param=t_param)
                reasons.extend(t_reasons)
        if fixed:
            smart = _replace_targets(smart, lambda t: fixed.get(id(t), t))
    if not reasons:
        return link, ()
    return msgspec.structs.replace(link, url=url, click_param=param, smart=smart), tuple(reasons)


def _servable_destination(url: str, param: str) -> tuple[str, str, list[str]]:
    reasons = []
    if not is_click_param(param):
        param = DEFAULT_CLICK_PARAM
        reasons.append(BAD_CLICK_PARAM)
    if not header_safe(url):
        url = quote(url, safe=_URL_KEEP, encoding="utf-8", errors="surrogatepass")
        reasons.append(BAD_URL_BYTES)
    stripped = strip_from_url(url, param)
    if stripped != url:
        url = stripped
        reasons.append(URL_CARRIED_CLICK_PARAM)
    return url, param, reasons


def _replace_targets(smart: Smart, fix) -> Smart:
    return msgspec.structs.replace(
        smart,
        rules=tuple(msgspec.structs.replace(r, target=fix(r.target)) for r in smart.rules),
        variants=tuple(msgspec.structs.replace(v, target=fix(v.target)) for v in smart.variants),
        expired=None if smart.expired is None else fix(smart.expired),
    )
