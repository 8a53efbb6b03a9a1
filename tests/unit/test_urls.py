import pytest

from core.urls import MAX_URL_BYTES, UrlError, host_candidates, validate_url

ACCEPTED = [
    ("https://shop.example.com/p/1?color=red", "https://shop.example.com/p/1?color=red", "shop.example.com"),
    ("HTTPS://Shop.Example.COM/P", "https://shop.example.com/P", "shop.example.com"),
    ("http://example.com", "http://example.com/", "example.com"),
    ("https://example.com:443/x", "https://example.com/x", "example.com"),
    ("https://example.com:8443/x", "https://example.com:8443/x", "example.com"),
    ("http://example.com:8080/x", "http://example.com:8080/x", "example.com"),
    ("https://example.com:65535/x", "https://example.com:65535/x", "example.com"),
    ("https://bücher.example/kaufen", "https://xn--bcher-kva.example/kaufen", "xn--bcher-kva.example"),
    ("https://example.com/ä ö".replace(" ", "%20"), "https://example.com/%C3%A4%20%C3%B6", "example.com"),
    ("https://example.com/p#frag", "https://example.com/p#frag", "example.com"),
    ("https://93.184.216.34/x", "https://93.184.216.34/x", "93.184.216.34"),
    ("https://[2606:4700::1111]/x", "https://[2606:4700::1111]/x", "2606:4700::1111"),
    ("https://example.com./x", "https://example.com/x", "example.com"),
    # public IP literals stay accepted (a trailing dot is dropped, as for names)
    ("https://8.8.8.8:8080/", "https://8.8.8.8:8080/", "8.8.8.8"),
    ("https://93.184.216.34./x", "https://93.184.216.34/x", "93.184.216.34"),
    ("https://[2a00:1450:4001::200e]/", "https://[2a00:1450:4001::200e]/", "2a00:1450:4001::200e"),
    # names that merely contain a local word are public
    ("https://localhost.example.com/", "https://localhost.example.com/", "localhost.example.com"),
    ("https://mylocal.shop/", "https://mylocal.shop/", "mylocal.shop"),
    ("https://1e3.com/", "https://1e3.com/", "1e3.com"),
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
    ("https://-bad-.com/", "host"),
    ("https://exa_mple.com/", "host"),
    ("https://1.2.3/", "host"),  # a browser reads 1.2.0.3: public, but only its plain spelling is taken
    ("https://0x5d.184.216.34/", "host"),
    ("https://1.2.3.4.5/", "host"),
    ("https://256.256.256.256/", "host"),
    ("https://%31%32%37.0.0.1/", "host"),
    ("https://[v1.example.com]/", "host"),
    ("https://[1:2:3]/", "malformed"),
    ("https://" + "a" * 64 + ".com/", "host"),
    ("https://example.com:99999/", "malformed"),
    # ports no browser connects to (Fetch's bad ports, and 0): the viewer's redirect would fail
    ("https://example.com:0/", "port"),
    ("https://example.com:00/", "port"),
    ("http://example.com:25/", "port"),
    ("https://example.com:6667/x", "port"),
    ("https://example.com:10080/", "port"),
    ("https://example.com/" + "a" * MAX_URL_BYTES, "too_long"),
]


# Punycode labels given as such (an ASCII host) meet the rules their Unicode form meets: refused when
# the punycode is broken or its Unicode form is one IDNA refuses, however spelled.
BAD_A_LABELS = [
    "xn--",  # nothing encoded
    "xn--abc-",  # plain "abc": an ASCII label is never encoded
    "xn--zz",  # not punycode
    "xn--0",
    "xn--a",  # decodes to U+0080, a control character
    "xn--9a",  # "£": not allowed in a name
    "xn--ls8h",  # an emoji: IDNA 2008 refuses it, as it refuses "💩.example" typed in Unicode
    "XN--ZZ",  # upper case is read as lower case, and refused alike
]
# (A-label, its Unicode form): both spellings name one host.
GOOD_A_LABELS = [
    ("xn--bcher-kva", "bücher"),
    ("XN--BCHER-KVA", "BÜCHER"),
    ("xn--fa-hia", "faß"),
    ("xn--mgbh0fb", "مثال"),
    ("xn--80ak6aa92e", "аррӏе"),  # one script (Cyrillic) whatever it looks like: IDNA allows it
]


@pytest.mark.parametrize("label", BAD_A_LABELS)
@pytest.mark.parametrize("host", ["{}.example", "shop.{}.example", "{}.com."])
def test_a_broken_punycode_label_is_refused(label: str, host: str) -> None:
    with pytest.raises(UrlError) as info:
        validate_url(f"https://{host.format(label)}/p")
    assert info.value.reason == "host"
    assert label.lower() in str(info.value)


@pytest.mark.parametrize(("a_label", "u_label"), GOOD_A_LABELS)
def test_a_punycode_label_names_the_host_its_unicode_form_names(a_label: str, u_label: str) -> None:
    given = validate_url(f"https://shop.{a_label}.example/p")
    assert given == validate_url(f"https://shop.{u_label}.example/p")
    assert given.host == f"shop.{a_label.lower()}.example"


# Beside a U-label, every label meets IDNA's rules (`ab--cd`: hyphens in 3rd and 4th place), whichever
# spelling the U-label is given in; a host of plain ASCII labels alone keeps the plain host-name rules.
MIXED_SPELLINGS = ["{}.ab--cd.example", "ab--cd.{}.example"]


@pytest.mark.parametrize("host", MIXED_SPELLINGS)
@pytest.mark.parametrize("spelling", ["bücher", "xn--bcher-kva", "XN--BCHER-KVA"])
def test_one_verdict_for_a_host_in_either_spelling(host: str, spelling: str) -> None:
    with pytest.raises(UrlError) as info:
        validate_url(f"https://{host.format(spelling)}/p")
    assert info.value.reason == "host"
    assert validate_url("https://ab--cd.example/p").host == "ab--cd.example"


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_rejected(raw: object, reason: str) -> None:
    with pytest.raises(UrlError) as info:
        validate_url(raw)
    assert info.value.reason == reason


NON_PUBLIC = [
    # names that resolve to this machine or the local network, however spelled
    "https://localhost/",
    "https://LOCALHOST./",
    "https://shop.localhost/",
    "https://ｌｏｃａｌｈｏｓｔ/",
    "https://printer.local/",
    "https://box.localdomain/",
    "https://db.internal/",
    "https://nas.home.arpa/",
    # IPv4: loopback, private, link-local (cloud metadata), unspecified, shared, multicast, reserved, ...
    "https://127.0.0.1/",
    "https://127.0.0.1./",
    "https://127.1/",
    "https://0x7f.0.0.1/",
    "https://0177.0.0.1/",
    "https://2130706433/",
    "https://１２７.０.０.１/",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.1.1:8080/",
    "https://169.254.169.254/latest/meta-data/",
    "https://0.0.0.0/",
    "https://0/",
    "https://100.64.0.1/",
    "https://224.0.0.1/",
    "https://239.255.255.250/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://192.0.2.1/",
    "https://198.18.0.1/",
    # IPv6: loopback, unspecified, unique-local, link-local (with a zone), site-local, multicast,
    # documentation, and every form that embeds an IPv4 address
    "https://[::1]/",
    "https://[::]/",
    "https://[fd00::1]/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[::1%25]/",
    "https://[fec0::1]/",
    "https://[ff02::1]/",
    "https://[2001:db8::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:8.8.8.8]/",
    "https://[::127.0.0.1]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[2002:7f00:1::]/",
    "https://[2001::1]/",
]


@pytest.mark.parametrize("raw", NON_PUBLIC)
def test_non_public_hosts_are_refused(raw: str) -> None:
    with pytest.raises(UrlError) as info:
        validate_url(raw)
    assert info.value.reason == "non_public_host", info.value


@pytest.mark.parametrize(
    ("host", "candidates"),
    [
        ("deep.shop.brand.example", ["deep.shop.brand.example", "shop.brand.example", "brand.example"]),
        ("brand.example", ["brand.example"]),
        ("93.184.216.34", ["93.184.216.34"]),  # an address has no parent domains
        ("2606:4700::1111", ["2606:4700::1111"]),
    ],
)
def test_host_candidates(host: str, candidates: list[str]) -> None:
    assert host_candidates(host) == candidates
