"""A link as the redirect may serve it, checked once when it enters a worker's cache (never per request).

Whatever is stored in Redis (a record written before validation was strict, a merchant claim that
changed the click parameter, a hand edit), every 302 must be a well-formed header with exactly one click
id. So before a link is cached:

- a click parameter that is not 1-64 characters of A-Z a-z 0-9 _ . - (a newline in it would make the
  server drop the connection after the click was recorded) falls back to the default `ct_click`;
- a destination with bytes a header may not carry (controls, space, DEL, non-ASCII) has them
  percent-encoded as UTF-8;
- any pair of the destination's query that a server could read as the click parameter is removed
  (querykeys.py), so ours is the only one that leaves.

Each correction is returned as a reason, counted in `clicktrail_redirect_fallbacks_total{reason}`. A clean
link comes back as the very same object."""

from __future__ import annotations

from urllib.parse import quote

import msgspec

from core.links import Link
from core.validate import DEFAULT_CLICK_PARAM, is_click_param
from redirector.querykeys import strip_from_url

BAD_CLICK_PARAM = "bad_click_param"
BAD_URL_BYTES = "bad_url_bytes"
URL_CARRIED_CLICK_PARAM = "url_carried_click_param"
REASONS = (BAD_CLICK_PARAM, BAD_URL_BYTES, URL_CARRIED_CLICK_PARAM)

# Left as they are when encoding a stored URL: printable ASCII except space, so '%' escapes already
# there and the URL's own syntax stay.
_URL_KEEP = "".join(map(chr, range(0x21, 0x7F)))


def header_safe(text: str) -> bool:
    """Printable ASCII without space: what a Location header value may carry as is."""
    return text.isascii() and text.isprintable() and " " not in text


def servable(link: Link) -> tuple[Link, tuple[str, ...]]:
    """The link with a header-safe click parameter and destination, and the reasons for each change."""
    reasons = []
    param = link.click_param
    if not is_click_param(param):
        param = DEFAULT_CLICK_PARAM
        reasons.append(BAD_CLICK_PARAM)
    url = link.url
    if not header_safe(url):
        url = quote(url, safe=_URL_KEEP, encoding="utf-8", errors="surrogatepass")
        reasons.append(BAD_URL_BYTES)
    stripped = strip_from_url(url, param)
    if stripped != url:
        url = stripped
        reasons.append(URL_CARRIED_CLICK_PARAM)
    if not reasons:
        return link, ()
    return msgspec.structs.replace(link, url=url, click_param=param), tuple(reasons)
