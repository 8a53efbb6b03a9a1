"""Destination URL validation: a pure function, run once when a link is created (never per redirect).

Accepts absolute http(s) URLs to a real host and returns them normalised (lower-case scheme and host,
IDN hosts as punycode, default port dropped, characters outside URL syntax percent-encoded). Everything
else is refused with a reason code that the API reports with a 422."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from clicktrail.validate import is_host_label

MAX_URL_BYTES = 2048
MAX_HOST_CHARS = 253
# Characters left as they are when percent-encoding path, query and fragment: URL syntax plus '%'
# (already-encoded input stays as it is).
_SAFE_CHARS = "/?#[]@!$&'()*+,;=-._~%:"
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise UrlError("malformed", f"malformed URL: {exc}") from None
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


def _encode(part: str) -> str:
    return quote(part, safe=_SAFE_CHARS, encoding="utf-8", errors="strict")


def _normalise_host(host: str) -> str:
    if not host:
        raise UrlError("host", "url has no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    host = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii") if not host.isascii() else host.lower()
    except idna.IDNAError as exc:
        raise UrlError("host", f"host is not a valid internationalised name: {exc}") from None
    if len(ascii_host) > MAX_HOST_CHARS:
        raise UrlError("host", "host name is too long")
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(map(is_host_label, labels)):
        raise UrlError("host", f"{host!r} is not a valid public host name")
    if labels[-1].isdigit():
        # "1.2.3" or "0x7f.1": not a name, and not a canonical IP either.
        raise UrlError("host", f"{host!r} is neither a host name nor an IP address")
    return ascii_host


def host_candidates(host: str) -> list[str]:
    """`host` and its parent domains, most specific first, without the bare top-level domain: a merchant
    owning brand.com owns shop.brand.com too."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] or [host]
