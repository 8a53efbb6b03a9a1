import pytest

from redirector.urls import MAX_URL_BYTES, UrlError, validate_url

ACCEPTED = [
    ("https://shop.example.com/p/1?color=red", "https://shop.example.com/p/1?color=red", "shop.example.com"),
    ("HTTPS://Shop.Example.COM/P", "https://shop.example.com/P", "shop.example.com"),
    ("http://example.com", "http://example.com/", "example.com"),
    ("https://example.com:443/x", "https://example.com/x", "example.com"),
    ("https://example.com:8443/x", "https://example.com:8443/x", "example.com"),
    ("https://bücher.example/kaufen", "https://xn--bcher-kva.example/kaufen", "xn--bcher-kva.example"),
    ("https://example.com/ä ö".replace(" ", "%20"), "https://example.com/%C3%A4%20%C3%B6", "example.com"),
    ("https://example.com/p#frag", "https://example.com/p#frag", "example.com"),
    ("https://93.184.216.34/x", "https://93.184.216.34/x", "93.184.216.34"),
    ("https://[2001:db8::1]/x", "https://[2001:db8::1]/x", "2001:db8::1"),
    ("https://example.com./x", "https://example.com/x", "example.com"),
]


@pytest.mark.parametrize(("raw", "url", "host"), ACCEPTED)
def test_accepted(raw: str, url: str, host: str) -> None:
    dest = validate_url(raw)
    assert (dest.url, dest.host) == (url, host)


REJECTED = [
    (None, "not_a_string"),
    ("", "not_a_string"),
    ("javascript:alert(1)", "scheme"),
    ("ftp://example.com/file", "scheme"),
    ("data:text/html,hi", "scheme"),
    ("example.com/p", "scheme"),
    ("https:example.com", "not_absolute"),
    ("https://user:pw@example.com/", "credentials"),
    ("https://user@example.com/", "credentials"),
    ("https://example.com\\@evil.com/", "backslash"),
    ("https://exa\rmple.com/", "control_character"),
    ("https://example.com/\n", "control_character"),
    ("https://example.com/\x00", "control_character"),
    ("https://example.com/\tx", "control_character"),
    ("https://example.com/a b", "control_character"),
    ("https:///path", "host"),
    ("https://localhost/", "host"),
    ("https://-bad-.com/", "host"),
    ("https://exa_mple.com/", "host"),
    ("https://1.2.3/", "host"),
    ("https://0x7f.1/", "host"),
    ("https://" + "a" * 64 + ".com/", "host"),
    ("https://example.com:99999/", "malformed"),
    ("https://example.com/" + "a" * MAX_URL_BYTES, "too_long"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_rejected(raw: object, reason: str) -> None:
    with pytest.raises(UrlError) as info:
        validate_url(raw)
    assert info.value.reason == reason
