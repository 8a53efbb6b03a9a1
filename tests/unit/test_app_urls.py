"""Destinations of smart-link rules: an app's own scheme is accepted, the dangerous schemes and schemes
without `//` are refused in every spelling (case, whitespace, control and invisible characters,
percent-encoding), and http(s) goes through the usual URL rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.urls import UrlError, validate_app_url

ACCEPTED = [
    ("shopapp://product/42", "shopapp://product/42"),
    ("ShopApp://product/42?ref=yt", "shopapp://product/42?ref=yt"),
    ("fb-messenger://user/123", "fb-messenger://user/123"),
    ("com.shop.app://open/p%2042", "com.shop.app://open/p%2042"),
    ("shopapp://p/ä", "shopapp://p/%C3%A4"),
    ("https://Shop.Example.com/p", "https://shop.example.com/p"),
]


@pytest.mark.parametrize(("raw", "url"), ACCEPTED)
def test_accepted(raw: str, url: str) -> None:
    dest = validate_app_url(raw)
    assert dest.url == url


DANGEROUS = ["javascript", "data", "file", "vbscript", "blob"]
# Each spelling is applied to every dangerous scheme: the class, not a list of known strings.
SPELLINGS = [
    ("plain", lambda s: f"{s}:alert(1)"),
    ("with //", lambda s: f"{s}://%0Aalert(1)"),
    ("upper case", lambda s: f"{s.upper()}://x"),
    ("mixed case", lambda s: f"{s[0].upper()}{s[1:]}://x"),
    ("leading space", lambda s: f" {s}://x"),
    ("leading tab", lambda s: f"\t{s}://x"),
    ("tab inside", lambda s: f"{s[:2]}\t{s[2:]}://x"),
    ("newline inside", lambda s: f"{s[:2]}\n{s[2:]}://x"),
    ("NUL inside", lambda s: f"{s[:2]}\x00{s[2:]}://x"),
    ("leading C0 control", lambda s: f"\x01{s}://x"),
    ("zero-width space", lambda s: f"{s[:2]}\u200b{s[2:]}://x"),
    ("BOM", lambda s: f"\ufeff{s}://x"),
    ("no-break space", lambda s: f"\u00a0{s}://x"),
    ("percent-encoded letter", lambda s: f"{s[:-1]}%{ord(s[-1]):02x}://x"),
    ("percent-encoded colon", lambda s: f"{s}%3a//x"),
    ("entity colon", lambda s: f"{s}&#58;//x"),
    ("fullwidth letter", lambda s: f"{chr(ord(s[0]) + 0xFEE0)}{s[1:]}://x"),
]


@pytest.mark.parametrize("scheme", DANGEROUS)
@pytest.mark.parametrize(("name", "spell"), SPELLINGS, ids=[n for n, _ in SPELLINGS])
def test_dangerous_schemes_refused_in_every_spelling(scheme: str, name: str, spell) -> None:
    with pytest.raises(UrlError):
        validate_app_url(spell(scheme))


REFUSED = [
    ("shopapp:product/42", "not_absolute"),  # no //
    ("mailto:a@example.com", "not_absolute"),
    ("tel:+441234", "not_absolute"),
    ("sms:123", "not_absolute"),
    ("about:blank", "not_absolute"),
    ("shopapp:/product", "not_absolute"),
    ("//shop.example.com/p", "scheme"),  # no scheme
    ("://x", "scheme"),
    ("1app://x", "scheme"),
    ("sh op://x", "control_character"),
    ("shopapp://p x", "control_character"),
    ("shopapp://p\x7f", "control_character"),
    ("", "not_a_string"),
    (None, "not_a_string"),
    ("shopapp://" + "a" * 2048, "too_long"),
    ("http://localhost/x", "non_public_host"),  # web URLs keep the usual rules
    ("https://user:pw@shop.example.com/", "credentials"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_refused(raw, reason: str) -> None:
    with pytest.raises(UrlError) as caught:
        validate_app_url(raw)
    assert caught.value.reason == reason


@given(st.text(max_size=40), st.sampled_from(DANGEROUS), st.text(max_size=20))
def test_no_text_around_a_dangerous_scheme_gets_through(before: str, scheme: str, after: str) -> None:
    """Whatever surrounds a dangerous scheme name, an accepted URL never starts with that scheme."""
    try:
        url = validate_app_url(f"{before}{scheme}:{after}").url
    except UrlError:
        return
    assert url.split(":", 1)[0] not in DANGEROUS
    assert url.isprintable() and not any(ch.isspace() for ch in url)
