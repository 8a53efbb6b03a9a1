"""Exactly one click parameter leaves us: every spelling of the merchant's parameter a server could read
is dropped from the viewer's query and from the stored destination, and a stored link that cannot go
into a header as it is gets corrected once, with a reason."""

from __future__ import annotations

from urllib.parse import parse_qsl

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.links import Link, Rule, Smart, Target, Variant
from redirector.linkcheck import (
    BAD_CLICK_PARAM,
    BAD_URL_BYTES,
    SMART_PLAN,
    URL_CARRIED_CLICK_PARAM,
    header_safe,
    servable,
)
from redirector.querykeys import drop_param, reads_as, strip_from_url
from redirector.redirect import build_location, pass_through_query

# Keys a server reads as "ct_click", and why.
PLANTED = [
    "ct_click",
    "ct%5Fclick",  # percent-encoded '_'
    "ct%5fclick",  # lower-case hex
    "%63t_click",  # any character encoded
    "%63%74%5F%63%6C%69%63%6B",  # every character encoded
    "%2563t_click",  # encoded twice (a decoding proxy in front)
    "%252563t_click",  # three times
    "CT_CLICK",  # case-insensitive servers (ASP.NET)
    "Ct_Click",
    "ct%5FCLICK",
    "ct.click",  # PHP: '.' -> '_'
    "ct+click",  # PHP: ' ' (a '+') -> '_'
    "ct%20click",
    "ct[click",  # PHP: a lone '[' -> '_'
    "ct_click[]",  # PHP/Rails array under ct_click
    "ct_click[0]",
    "ct_click%5B%5D",
    "+ct_click",  # PHP drops leading blanks
    "ct_click%00junk",  # C strings end at NUL
    "ct_clic%E2%84%AA",  # Kelvin sign: lower-cases to 'k' (Java equalsIgnoreCase, casefold)
    "%EF%BD%83%EF%BD%94_click",  # full-width 'ct' (NFKC)
]
# Keys that are not the parameter: kept, byte for byte.
NOT_PLANTED = ["ct_clicks", "act_click", "ct-click", "ct_clic", "ct%5Fclicks", "xct%2Eclick", "click", "ct"]


@pytest.mark.parametrize("key", PLANTED)
@pytest.mark.parametrize("value", ["FORGED", "", "a%20b"])
def test_every_spelling_of_the_parameter_is_dropped(key: str, value: str) -> None:
    query = f"utm_source=yt&{key}={value}&x=%C3%A9"
    assert reads_as(f"{key}={value}", "ct_click")
    assert pass_through_query(query.encode(), "ct_click") == "utm_source=yt&x=%C3%A9"


@pytest.mark.parametrize("key", NOT_PLANTED)
def test_other_keys_are_kept_byte_for_byte(key: str) -> None:
    query = f"{key}=1&Q=a%2fb+c&ref=x.y&ct_click=F"
    assert pass_through_query(query.encode(), "ct_click") == query.removesuffix("&ct_click=F")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("x=1;ct_click=F", "x=1"),  # ';' separates pairs for some servers
        ("ct_click=F;x=1&y=2", "x=1&y=2"),
        ("x=%26ct_click%3DF&y=2", "y=2"),  # a proxy that decodes the whole query first
        ("x=a%3Bct%5Fclick%3DF", ""),
        ("ct_click", ""),  # a key without '='
        ("a=1&&b=2", "a=1&&b=2"),  # untouched when nothing matches, empty pairs and all
        ("a=1&ct_click=F&&b=2", "a=1&&b=2"),
        ("q=ct_click", "q=ct_click"),  # the name as a value is not a key
        ("q=%63t_click", "q=%63t_click"),
    ],
)
def test_separators_and_values(query: str, expected: str) -> None:
    assert pass_through_query(query.encode(), "ct_click") == expected


@pytest.mark.parametrize(
    ("param", "planted", "kept"),
    [
        ("ref", ["REF", "r%65f", "ref[]", "%2572ef"], ["refs", "re", "preref"]),
        ("ref.id", ["ref.id", "ref_id", "REF%2EID", "ref+id", "ref[id"], ["refid", "ref-id"]),
        ("x-y", ["X-Y", "x%2Dy", "x-y[a]"], ["x_y", "xy"]),
    ],
)
def test_other_parameters(param: str, planted: list[str], kept: list[str]) -> None:
    for key in planted:
        assert drop_param(f"a=1&{key}=F", param) == "a=1", key
    for key in kept:
        assert drop_param(f"a=1&{key}=F", param) == f"a=1&{key}=F", key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://s.example/p", "https://s.example/p"),
        ("https://s.example/p?ct_click=OLD", "https://s.example/p"),
        ("https://s.example/p?a=1&CT%5FCLICK=OLD&b=2#frag", "https://s.example/p?a=1&b=2#frag"),
        ("https://s.example/p?ct_click=OLD#x?ct_click=y", "https://s.example/p#x?ct_click=y"),
        ("https://s.example/p#ct_click=frag", "https://s.example/p#ct_click=frag"),
        ("https://s.example/ct_click?a=1", "https://s.example/ct_click?a=1"),
    ],
)
def test_strip_from_url(url: str, expected: str) -> None:
    assert strip_from_url(url, "ct_click") == expected


def link(url: str = "https://s.example/p", click_param: str = "ct_click") -> Link:
    return Link(
        code="abc", url=url, creator_id="c", host="s.example", created_at_ms=1, click_param=click_param
    )


def test_a_clean_link_is_served_as_it_is() -> None:
    clean = link("https://s.example/p?a=1#f", "ref.id")
    assert servable(clean) == (clean, ())
    assert servable(clean)[0] is clean


@pytest.mark.parametrize(
    "bad", ["ct_click\n", "ct_click\r\n", "ct\x00click", "ct_click\x7f", "ct_clické", "", "a b"]
)
def test_a_click_param_unfit_for_a_header_falls_back(bad: str) -> None:
    served, reasons = servable(link(click_param=bad))
    assert (served.click_param, reasons) == ("ct_click", (BAD_CLICK_PARAM,))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://s.example/p\n", "https://s.example/p%0A"),
        ("https://s.example/p\r\nSet-Cookie: a=b", "https://s.example/p%0D%0ASet-Cookie:%20a=b"),
        ("https://s.example/p?q=\x00", "https://s.example/p?q=%00"),
        ("https://s.example/p\x7f", "https://s.example/p%7F"),
        ("https://s.example/caf\u00e9", "https://s.example/caf%C3%A9"),  # latin-1, not ASCII
        ("https://s.example/\u2603?q=%41", "https://s.example/%E2%98%83?q=%41"),  # not latin-1
    ],
)
def test_url_bytes_unfit_for_a_header_are_encoded(url: str, expected: str) -> None:
    served, reasons = servable(link(url))
    assert (served.url, reasons) == (expected, (BAD_URL_BYTES,))
    assert header_safe(served.url)


def test_all_corrections_at_once() -> None:
    served, reasons = servable(link("https://s.example/\u00e9?ct%5Fclick=OLD&a=1", "ct_click\n"))
    assert served.url == "https://s.example/%C3%A9?a=1" and served.click_param == "ct_click"
    assert reasons == (BAD_CLICK_PARAM, BAD_URL_BYTES, URL_CARRIED_CLICK_PARAM)


# --- the property: exactly one click parameter leaves us, and it is ours ----------------------------
CLICK_ID = "AZaz09_-AZaz09_-AZaz09_-AZaz09"
PIECES = [
    *PLANTED,
    *NOT_PLANTED,
    *"=&;%+.[]# \n\r\x00é\u2603",
    "%2",
    "%26",
    "%3D",
    "%3B",
    "%5F",
    "%25",
    "%0D%0A",
    "FORGED",
    "ref",
    "REF",
    "r%65f",
]
query_text = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
viewer_query = st.one_of(query_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=40))
params = st.sampled_from(["ct_click", "ref", "ref.id", "Ct_Click", "x-y", "ct_click\n", "ref\r"])


@settings(max_examples=400, deadline=None)
@given(params, query_text, query_text, viewer_query)
def test_exactly_one_click_parameter_leaves_us(
    stored_param: str, dest_query: str, fragment: str, query: bytes
) -> None:
    stored = link(f"https://s.example/p?{dest_query}#{fragment}", stored_param)
    served, _ = servable(stored)
    param = served.click_param
    location = build_location(served.url, pass_through_query(query, param), param, CLICK_ID)
    assert header_safe(location)
    carried = location.partition("#")[0].partition("?")[2]
    # Our own reading (every spelling, '&' and ';' separators) ...
    pieces = [piece for pair in carried.split("&") for piece in pair.split(";")]
    assert [p for p in pieces if reads_as(p, param)] == [f"{param}={CLICK_ID}"]
    # ... and an independent one: Python's form decoding, exact and case-insensitive names.
    pairs = parse_qsl(carried, keep_blank_values=True)
    assert [v for k, v in pairs if k == param] == [CLICK_ID]
    assert [v for k, v in pairs if k.lower() == param.lower()] == [CLICK_ID]


def test_every_smart_link_destination_is_made_servable() -> None:
    """Rules, variants and expired_url are corrected like the link's own url (stored by hand or before a
    merchant changed its click parameter): every 302 stays header-safe with one click id."""

    def target(url: str, param: str = "ct_click") -> Target:
        return Target(url=url, host="s.example", click_param=param)

    smart = Smart(
        rules=(Rule(target("https://s.example/r\n"), os=("ios",)), Rule(target("https://s.example/ok"))),
        variants=(Variant(target("https://s.example/v?ct_click=OLD&a=1"), 1),),
        expired=target("https://s.example/e", "bad param"),
    )
    clean = link()
    served, reasons = servable(msgspec.structs.replace(clean, smart=smart))
    # stored without its derived fields (written by hand): they are made right too
    assert sorted(reasons) == sorted([SMART_PLAN, BAD_URL_BYTES, URL_CARRIED_CLICK_PARAM, BAD_CLICK_PARAM])
    assert (served.smart.weight_bounds, served.smart.country_rules) == ((1,), False)
    assert served.url == clean.url
    assert [r.target.url for r in served.smart.rules] == ["https://s.example/r%0A", "https://s.example/ok"]
    assert served.smart.rules[1].target is smart.rules[1].target  # a clean destination is kept as it is
    assert served.smart.variants[0].target.url == "https://s.example/v?a=1"
    assert served.smart.expired.click_param == "ct_click"
    assert servable(msgspec.structs.replace(clean, smart=served.smart)) == (
        msgspec.structs.replace(clean, smart=served.smart),
        (),
    )
