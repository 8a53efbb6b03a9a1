"""The escape page (redirector/escape.py): every destination comes back out of the page exactly, whatever
characters it holds; the page loads nothing and runs only the script its policy names."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redirector.escape import (
    CONTENT_SECURITY_POLICY,
    escape_page,
    escape_response,
    platform_of,
    system_browser_url,
)

ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 Mobile Safari/537.36 musical_ly_33"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/22B83 Instagram 354"
)
OTHER = "Mozilla/5.0 (Windows NT 10.0) [FBAN/FBW;FBAV/1]"


class Page(HTMLParser):
    """The tags, attributes, script and style of a page, as a browser's tokenizer reads them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {"script": "", "style": ""}
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in in self.text:
            self.text[self._in] += data

    def href(self, element_id: str) -> str:
        return next(a["href"] for t, a in self.tags if t == "a" and a.get("id") == element_id)


PAGE_TAGS = [
    "html",
    "head",
    "meta",
    "meta",
    "meta",
    "title",
    "style",
    "body",
    "main",
    "p",
    "a",
    "a",
    "script",
]

DESTINATIONS = [
    "https://shop.example.com/p/42?ct_click=AbC",
    "https://shop.example.com/p?q=\"quoted\"&x='single'&ct_click=AbC",
    "https://shop.example.com/p?q=<b>&r=</script><script>alert(1)</script>&ct_click=AbC",
    "https://shop.example.com/p?q=</a><a href=javascript:alert(1)>&ct_click=AbC",
    "https://shop.example.com/p?q=&amp;&lt;&#34;&ct_click=AbC",
    "https://shop.example.com/p?q=-->&r=<!--&ct_click=AbC",
    "https://shop.example.com/café/ünïcödé?q=日本語&e=😀&ct_click=AbC",
    "https://shop.example.com/p?" + "&".join(f"k{i}=v{i}%20x" for i in range(400)) + "&ct_click=AbC",
    "https://shop.example.com/p?a=1;b=2#Intent;scheme=evil;end&ct_click=AbC#frag",
    "http://shop.example.com:8080/p?ct_click=AbC#reviews",
    "https://[2001:db8::1]/p?ct_click=AbC",
]


@pytest.mark.parametrize("location", DESTINATIONS)
@pytest.mark.parametrize("agent", [ANDROID, IPHONE, OTHER])
def test_destination_comes_out_exactly(location, agent):
    page = Page(escape_page(location, agent).decode())
    assert page.href("here") == location
    assert page.href("open") == system_browser_url(location, platform_of(agent))
    # Only the page's own tags: nothing the destination holds became markup.
    assert [t for t, _ in page.tags] == PAGE_TAGS
    assert [attrs for t, attrs in page.tags if t == "a"] == [
        {"id": "open", "href": page.href("open")},
        {"id": "here", "href": location},
    ]


# Control characters never reach a Location (linkcheck.py percent-encodes them); everything else may.
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=300))
def test_any_text_round_trips(tail):
    location = "https://shop.example.com/p?q=" + tail
    page = Page(escape_page(location, IPHONE).decode())
    assert page.href("here") == location
    assert page.href("open") == "x-safari-" + location
    assert [t for t, _ in page.tags] == PAGE_TAGS


def test_android_hands_off_with_an_intent_whose_fallback_is_the_destination():
    location = "https://shop.example.com/p/42?a=1&b=x;y&ct_click=AbC#reviews"
    intent = system_browser_url(location, "android")
    data, extras = intent.rsplit("#Intent;", 1)  # Android reads the extras after the last '#'
    assert data == "intent://shop.example.com/p/42?a=1&b=x;y&ct_click=AbC#reviews"
    fields = dict(part.split("=", 1) for part in extras.removesuffix(";end").split(";"))
    assert fields["scheme"] == "https" and fields["action"] == "android.intent.action.VIEW"
    assert unquote(fields["S.browser_fallback_url"]) == location
    assert not set("#;") & set(fields["S.browser_fallback_url"])
    assert (
        system_browser_url("http://shop.example.com/", "android")
        .split("#Intent;")[1]
        .startswith("scheme=http;")
    )


@pytest.mark.parametrize(
    ("location", "platform", "expected"),
    [
        ("https://s.example.com/p", "ios", "x-safari-https://s.example.com/p"),
        ("http://s.example.com/p", "ios", "x-safari-http://s.example.com/p"),
        ("https://s.example.com/p", "", "https://s.example.com/p"),
        ("shopapp://product/42", "android", "shopapp://product/42"),  # an app's own scheme: as it is
        ("shopapp://product/42", "ios", "shopapp://product/42"),
    ],
)
def test_system_browser_url(location, platform, expected):
    assert system_browser_url(location, platform) == expected


@pytest.mark.parametrize(
    ("agent", "platform"),
    [
        (ANDROID, "android"),
        (IPHONE, "ios"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0) [LinkedInApp]", "ios"),
        (OTHER, ""),
    ],
)
def test_platform_of(agent, platform):
    assert platform_of(agent) == platform


def test_policy_allows_exactly_the_inline_script_and_style():
    page = Page(escape_page(DESTINATIONS[0], IPHONE).decode())

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == digest(page.text["script"])
    assert policy["style-src"] == digest(page.text["style"])
    # Self-contained: no attribute of any tag loads anything.
    assert not any(k in ("src", "srcset", "action", "data") for _, attrs in page.tags for k in attrs)
    assert not re.search(r"url\(|@import", page.text["style"])


def test_response_headers():
    status, headers, body = escape_response(DESTINATIONS[0], ANDROID)
    named = dict(headers)
    assert status == 200 and int(named[b"content-length"]) == len(body)
    assert named[b"content-type"] == b"text/html; charset=utf-8"
    assert named[b"cache-control"] == b"private, no-store"
    assert named[b"x-content-type-options"] == b"nosniff"
    assert named[b"referrer-policy"] == b"no-referrer"
    assert named[b"content-security-policy"].startswith(b"default-src 'none'")
