"""The in-app browser escape page: what a link with `open_in: "browser"` answers, instead of its 302, to a
GET from a known in-app browser (inapp.py).

The page is tiny and self-contained. It carries the destination (exactly the 302's Location, with the same
click id) twice, as the `href` of two links: "Open in browser" (the system-browser URL: Android's
`intent:` with the destination as `S.browser_fallback_url`, iOS's `x-safari-https:`), and "Continue here"
(the plain destination). The script is a constant that reads both from the links, so no value is ever
written into script text: HTML attribute escaping is the only escaping there is, and the script's and the
style's hashes, computed once here, are all the Content-Security-Policy allows (`default-src 'none'`).
The script tries the system browser, and if the page is still visible after `FALLBACK_MS` (the app kept
the viewer, or the platform has no such hand-off) it replaces itself with the plain destination. The page
never links back through the short link: the click was recorded once, by the request that got this page.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from urllib.parse import quote

# How long the page waits for the system browser to take over before it opens the destination in place.
FALLBACK_MS = 1500

SCRIPT = (
    "(function(){"
    'var d=document,o=d.getElementById("open").href,h=d.getElementById("here").href,left=false;'
    "function away(){left=true}"
    'd.addEventListener("visibilitychange",function(){if(d.hidden)away()});'
    'addEventListener("pagehide",away);'
    "if(o!==h){location.href=o}"
    f"setTimeout(function(){{if(!left)location.replace(h)}},o!==h?{FALLBACK_MS}:0)"
    "})();"
)
STYLE = (
    "body{font:18px/1.5 system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;"
    "justify-content:center;text-align:center;background:#fff;color:#111}"
    "a{display:block;margin:12px auto;padding:14px 20px;max-width:320px;border-radius:10px}"
    "#open{background:#111;color:#fff;text-decoration:none;font-weight:600}#here{color:#555}"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Fixed headers of every escape page (content-length is added per page).
HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"private, no-store"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    # The merchant learns the visit from the click id; the short link (with the viewer's query) stays ours.
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-robots-tag", b"noindex"),
)
# The page around its two links' hrefs (concatenated, not formatted: the script and style hold braces).
_HEAD = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
    '<meta name="robots" content="noindex"><title>Opening in your browser</title>'
    "<style>" + STYLE + "</style></head><body><main>"
    "<p>This link opens in your browser.</p>"
    '<a id="open" href="'
)
_MIDDLE = '">Open in browser</a><a id="here" href="'
_TAIL = '">Continue here</a></main><script>' + SCRIPT + "</script></body></html>"


def platform_of(user_agent: str) -> str:
    """ "android", "ios" or "" (any other: the page then opens the destination in place)."""
    if "Android" in user_agent:
        return "android"
    if "iPhone" in user_agent or "iPad" in user_agent or "iPod" in user_agent:
        return "ios"
    return ""


def system_browser_url(location: str, platform: str) -> str:
    """The URL that hands `location` (http or https) to the system browser on `platform`; `location`
    itself when there is no such hand-off (another platform, or a destination in an app's own scheme)."""
    scheme, sep, rest = location.partition("://")
    if not sep or scheme not in ("http", "https"):
        return location
    if platform == "android":
        # Android reads the intent's extras after the LAST '#': the destination's own fragment stays in
        # the data part, and the fallback URL is fully percent-encoded, so it holds no '#' or ';'.
        fallback = quote(location, safe="")
        return (
            f"intent://{rest}#Intent;scheme={scheme};action=android.intent.action.VIEW;"
            f"category=android.intent.category.BROWSABLE;S.browser_fallback_url={fallback};end"
        )
    if platform == "ios":
        return f"x-safari-{location}"
    return location


def escape_page(location: str, user_agent: str) -> bytes:
    """The page's body for a viewer with `user_agent`, whose destination (with click id) is `location`."""
    open_url = system_browser_url(location, platform_of(user_agent))
    return (_HEAD + escape(open_url) + _MIDDLE + escape(location) + _TAIL).encode()


def escape_response(location: str, user_agent: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of the escape page, in the shape the redirect sends a 302."""
    body = escape_page(location, user_agent)
    return 200, [*HEADERS, (b"content-length", str(len(body)).encode())], body
