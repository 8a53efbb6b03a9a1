"""Destination URL validation: a pure function, run once when a link is created (never per redirect).

Accepts absolute http(s) URLs to a real host and returns them normalised (lower-case scheme and host,
IDN hosts as punycode, default port dropped, characters outside URL syntax percent-encoded). A host given
in punycode meets the rules its Unicode form meets. Everything else is refused with a reason code that the
API reports with a 422.

Hosts that are not on the public internet are refused (`non_public_host`): names that resolve to this
machine or its local network (`localhost`, `*.localhost`, `*.local`, ...) and IP literals outside the
global unicast space (private, loopback, link-local, unspecified, shared 100.64/10, multicast, reserved,
documentation, and IPv6 forms that embed an IPv4 address or carry a zone). A short link to such a host
would send a viewer's browser into their own network, and no merchant's shop lives there. Public IP
literals stay accepted: they are valid hosts a shop may use."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import idna

from core.validate import is_host_label

MAX_URL_BYTES = 2048
MAX_HOST_CHARS = 253
# WHATWG's "ends in a number": such a host is an IPv4 address to a browser, never a name.
_NUMBER_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Characters left as they are when percent-encoding path, query and fragment: URL syntax plus '%'
# (already-encoded input stays as it is).
_SAFE_CHARS = "/?#[]@!$&'()*+,;=-._~%:"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Ports a browser will not connect to: the Fetch standard's "bad ports" (mail, ssh, IRC... reached by a
# redirect), and 0, which no connection can use. A link sending viewers there would fail in every browser.
BAD_PORTS = frozenset({
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103,
    104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514,
    515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723,
    2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
})  # fmt: skip
# Names that resolve to this machine or its local network, never to a public shop: RFC 6761 localhost,
# RFC 6762 .local (mDNS), RFC 8375 home.arpa, ICANN's .internal, and the de-facto localdomain.
LOCAL_NAME_SUFFIXES = ("localhost", "localdomain", "local", "internal", "home.arpa")
# NAT64 prefixes (RFC 6052, RFC 8215): the IPv4 address they embed is what a browser reaches.
_NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Destination:
    url: str
    host: str  # lower-case ASCII (punycode) hostname or IP literal without brackets


def validate_url(raw: object) -> Destination:
    if not isinstance(raw, str) or not raw:
        raise UrlError("not_a_string", "url must be a non-empty string")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise UrlError("too_long", f"url is over {MAX_URL_BYTES} bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch in " \u2028\u2029" for ch in raw):
        raise UrlError("control_character", "url contains control characters or spaces")
    scheme, sep, _ = raw.partition(":")
    if not sep or scheme.lower() not in _DEFAULT_PORTS:
        raise UrlError("scheme", "only http and https URLs are accepted")
    rest = raw[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise UrlError("not_absolute", "url must be absolute (scheme://host/...)")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "\\" in authority:
        raise UrlError("backslash", "backslash in the host part")
    if "@" in authority:
        raise UrlError("credentials", "credentials in the URL are not accepted")
    parts, port = _split(raw)
    if "[" in authority and ":" not in (parts.hostname or ""):
        raise UrlError("host", "only an IPv6 address may stand in brackets")
    host = _normalise_host(parts.hostname or "")
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    url = urlunsplit(
        (scheme, netloc, _encode(parts.path) or "/", _encode(parts.query), _encode(parts.fragment))
    )
    if len(url.encode()) > MAX_URL_BYTES:
        raise UrlError("too_long", f"url is over {MAX_URL_BYTES} bytes once normalised")
    return Destination(url=url, host=host)


def _split(raw: str) -> tuple[SplitResult, int | None]:
    """The URL's parts and its port, which must be one a browser connects to."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise UrlError("malformed", f"malformed URL: {exc}") from None
    if port in BAD_PORTS:
        raise UrlError("port", f"port {port} is one browsers refuse to connect to")
    return parts, port


def _encode(part: str) -> str:
    return quote(part, safe=_SAFE_CHARS, encoding="utf-8", errors="strict")


def _normalise_host(host: str) -> str:
    if not host:
        raise UrlError("host", "url has no host")
    if ":" in host:  # only an IPv6 literal keeps a colon once urlsplit took the port off
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise UrlError("host", f"{host!r} is not a valid IPv6 address") from None
        return _public_ip_host(ip, host)
    ascii_host = to_ascii_host(host)
    if len(ascii_host) > MAX_HOST_CHARS:
        raise UrlError("host", "host name is too long")
    labels = ascii_host.split(".")
    if _NUMBER_LABEL_RE.fullmatch(labels[-1]):
        # A browser reads a host that ends in a number as an IPv4 address ("127.1", "0x7f.0.0.1").
        ip = whatwg_ipv4(ascii_host)
        if ip is None:
            raise UrlError("host", f"{host!r} is neither a host name nor an IP address")
        if str(ip) != ascii_host and is_public_ip(ip):
            raise UrlError("host", f"{host!r} is an unusual spelling of {ip}: write {ip}")
        return _public_ip_host(ip, host)
    if is_local_name(ascii_host):
        raise UrlError("non_public_host", f"{host!r} names this machine or a local network")
    if len(labels) < 2 or not all(map(is_host_label, labels)):
        raise UrlError("host", f"{host!r} is not a valid public host name")
    return ascii_host


def to_ascii_host(host: str) -> str:
    """A host name as it is stored and compared (link destinations, merchant domains): lower-case ASCII,
    a Unicode name as punycode, one trailing dot (the root) dropped. Raises UrlError("host") for a name
    IDNA refuses, in either spelling; the message shows at most the name's first 100 characters."""
    host = host.removesuffix(".") if not host.endswith("..") else host
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii") if not host.isascii() else host.lower()
    except idna.IDNAError as exc:
        raise UrlError("host", f"host is not a valid internationalised name: {exc}") from None
    if (problem := a_label_problem(ascii_host)) is not None:
        raise UrlError("host", f"{host[:100]!r} is not a valid host name: {problem}")
    return ascii_host


def a_label_problem(host: str) -> str | None:
    """Why a lower-case ASCII host holding punycode labels (`xn--...`) is not a name IDNA allows, or None.
    A host given in Unicode has every label checked by `idna.encode`; one given already encoded passed
    unread, so `xn--zz` (not punycode), `xn--abc-` (plain `abc`) or `xn--ls8h` (an emoji, refused in its
    Unicode form too) were stored, and one name had two spellings with two verdicts. Decoding the whole
    host checks every label by the rules its Unicode spelling meets (`ab--cd` beside a U-label included).
    A host without such a label is left to the plain host-name rules, as before."""
    if not any(label.startswith("xn--") for label in host.split(".")):
        return None
    try:
        idna.decode(host)
    except (idna.IDNAError, UnicodeError) as exc:
        return f"not a valid internationalised name: {exc}"
    return None


def _public_ip_host(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, raw: str) -> str:
    if not is_public_ip(ip):
        raise UrlError("non_public_host", f"{raw!r} is not a public internet address ({ip})")
    return str(ip)


def whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a browser reads in a lower-case host that ends in a number (WHATWG URL standard:
    "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1"), or None if it is not one."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        digits, base, allowed = part, 10, "0123456789"
        if part.startswith("0x"):
            digits, base, allowed = part[2:], 16, "0123456789abcdef"
        elif len(part) > 1 and part.startswith("0"):
            digits, base, allowed = part[1:], 8, "01234567"
        if not set(digits) <= set(allowed) or (not digits and base != 16):
            return None
        numbers.append(int(digits, base) if digits else 0)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    return ipaddress.IPv4Address(numbers[-1] + sum(n << 8 * (3 - i) for i, n in enumerate(numbers[:-1])))


def is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a browser sent to `ip` reaches the public internet: global unicast only."""
    if isinstance(ip, ipaddress.IPv6Address) and (
        ip.scope_id is not None
        or ip.ipv4_mapped is not None
        or ip.sixtofour is not None
        or ip.teredo is not None
        or ip.is_site_local
        or any(ip in net for net in _NAT64_NETWORKS)
    ):
        # An embedded IPv4 address (or a zone) says where the packets go: write that IPv4 itself.
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    )


def is_local_name(host: str) -> bool:
    """Whether a lower-case host name (no trailing dot) is one that resolves locally, never publicly."""
    return any(host == name or host.endswith("." + name) for name in LOCAL_NAME_SUFFIXES)


def non_public_domain(domain: str) -> str | None:
    """Why a merchant may not register `domain` (lower case, no trailing dot) although it is a valid
    host name, or None: it resolves locally, or it is an address (which has no subdomains to own)."""
    if is_local_name(domain):
        return f"{domain!r} names this machine or a local network"
    if _NUMBER_LABEL_RE.fullmatch(domain.rsplit(".", 1)[-1]) or is_ip_literal(domain):
        return f"{domain!r} is an IP address, not a domain name"
    return None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_candidates(host: str) -> list[str]:
    """`host` and its parent domains, most specific first, without the bare top-level domain: a merchant
    owning brand.com owns shop.brand.com too. An IP literal has no parents."""
    if is_ip_literal(host):
        return [host]
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] or [host]


# --- app deep links (smart-link rules only) ------------------------------------------------------------
# RFC 3986 scheme grammar, lower-cased before the check: anything else (a percent-escape, whitespace, a
# control or invisible character inside the name) cannot be a scheme a browser would honour as written.
_SCHEME_RE = re.compile(r"\A[a-z][a-z0-9+.-]{0,31}\Z")
# Schemes that run code or read local data in the viewer's browser: refused even with `//`.
DANGEROUS_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob"})
WEB_SCHEMES = frozenset(_DEFAULT_PORTS)


def validate_app_url(raw: object) -> Destination:
    """An app's own deep link (`shopapp://product/42`), as a smart-link rule may use it; http(s) URLs are
    judged by `validate_url`. Refused: the dangerous schemes, any scheme without `//`, and any character a
    browser would strip or re-read (whitespace and invisible characters anywhere, control characters,
    percent-escapes in the scheme): the check is on the raw text, so no spelling of `javascript:` passes.
    The host of a deep link is "" (it names no web host; see smartlinks for whose click it is)."""
    if not isinstance(raw, str) or not raw:
        raise UrlError("not_a_string", "url must be a non-empty string")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise UrlError("too_long", f"url is over {MAX_URL_BYTES} bytes")
    if not raw.isprintable() or any(ch.isspace() for ch in raw):
        raise UrlError("control_character", "url contains control, invisible or space characters")
    scheme, sep, rest = raw.partition(":")
    scheme = scheme.lower()
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise UrlError("scheme", "url must start with a scheme (letters, digits, + . -) and ':'")
    if scheme in DANGEROUS_SCHEMES:
        raise UrlError("scheme", f"the {scheme}: scheme is never accepted")
    if scheme in WEB_SCHEMES:
        return validate_url(raw)
    if not rest.startswith("//"):
        raise UrlError("not_absolute", "an app link must be scheme://...")
    url = scheme + ":" + _encode(rest)
    if len(url.encode()) > MAX_URL_BYTES:
        raise UrlError("too_long", f"url is over {MAX_URL_BYTES} bytes once normalised")
    return Destination(url=url, host="")
