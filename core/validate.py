"""Full-match validation of the identifiers the service accepts: one place, one way.

`re.match("^[A-Z]{3}$", "EUR\\n")` matches, because `$` also matches before a final newline; msgspec's
`Meta(pattern=...)` is a search with the same `$`. So every pattern here is anchored with `\\A ... \\Z`
(correct whether a caller uses `match`, `search` or `fullmatch`), and the checks below use `fullmatch` and
refuse anything that is not a `str`. Nothing else in the project writes its own anchored regex."""

from __future__ import annotations

import re
import string

# Creator, merchant and other ids: they end up in Redis keys and ClickHouse rows.
ID_PATTERN = r"\A[A-Za-z0-9_-]{1,64}\Z"
# ISO 4217 alphabetic codes.
CURRENCY_PATTERN = r"\A[A-Z]{3}\Z"
# A merchant's click parameter: goes into every Location header, so only URL-safe, header-safe ASCII.
CLICK_PARAM_PATTERN = r"\A[A-Za-z0-9_.-]{1,64}\Z"
# ISO 3166 alpha-2 country codes.
COUNTRY_PATTERN = r"\A[A-Z]{2}\Z"
# Decimal seconds in ASCII only: `str.isdigit()` also accepts "²" and "١٢٣", which `int()` refuses or
# reads as another number. Twelve digits reach the year 33658, far past any real timestamp.
TIMESTAMP_S_PATTERN = r"\A[0-9]{1,12}\Z"
# A Content-Length: ASCII digits only; 19 digits is past any body we would read.
CONTENT_LENGTH_PATTERN = r"\A[0-9]{1,19}\Z"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# A merchant domain: lower-case ASCII (punycode) labels, at least two, 253 characters at most.
HOST_PATTERN = rf"\A(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})+\Z"
# One label of a destination host name (destination hosts are checked label by label).
HOST_LABEL_PATTERN = r"\A(?!-)[a-z0-9-]{1,63}(?<!-)\Z"
# An order webhook's `webhook-id` (opaque to Standard Webhooks: `msg_2KWPBgLlAfxdpx2AI54pPJ85f4W`):
# printable ASCII, spaces inside only. A header's bytes past ASCII are read as Latin-1 here but signed as
# whatever the sender encoded (UTF-8 by the Standard Webhooks libraries), so their characters are a guess;
# spaces or tabs at either end are not part of a field value (RFC 9110): a parser or proxy drops them, and
# the id received is no longer the one signed. Its length is checked apart (attribution/webhooks.py).
WEBHOOK_ID_PATTERN = r"\A[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z"
# An API key's id: the key's SHA-256, lowercase hex (redirector/auth.py).
KEY_ID_PATTERN = r"\A[0-9a-f]{64}\Z"

ID_RE = re.compile(ID_PATTERN)
CURRENCY_RE = re.compile(CURRENCY_PATTERN)
CLICK_PARAM_RE = re.compile(CLICK_PARAM_PATTERN)
COUNTRY_RE = re.compile(COUNTRY_PATTERN)
TIMESTAMP_S_RE = re.compile(TIMESTAMP_S_PATTERN)
CONTENT_LENGTH_RE = re.compile(CONTENT_LENGTH_PATTERN)
HOST_RE = re.compile(HOST_PATTERN)
HOST_LABEL_RE = re.compile(HOST_LABEL_PATTERN)
KEY_ID_RE = re.compile(KEY_ID_PATTERN)
WEBHOOK_ID_RE = re.compile(WEBHOOK_ID_PATTERN)

# Link codes: a character set rather than a regex, because the redirect checks every request's path
# against it (a frozenset test is cheaper than a regex call).
CODE_MIN_CHARS = 3
CODE_MAX_CHARS = 64
CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
DEFAULT_CLICK_PARAM = "ct_click"


def fullmatch(pattern: re.Pattern[str], value: object) -> bool:
    """True only for a `str` matched by `pattern` from its first to its last character."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_id(value: object) -> bool:
    return fullmatch(ID_RE, value)


def is_key_id(value: object) -> bool:
    return fullmatch(KEY_ID_RE, value)


def is_webhook_id(value: object) -> bool:
    return fullmatch(WEBHOOK_ID_RE, value)


def is_currency(value: object) -> bool:
    return fullmatch(CURRENCY_RE, value)


def is_click_param(value: object) -> bool:
    return fullmatch(CLICK_PARAM_RE, value)


def is_country(value: object) -> bool:
    return fullmatch(COUNTRY_RE, value)


# Only ASCII letters change case: Unicode's upper case maps some other letters onto ASCII ones ("ſ" to
# "S", "ı" to "I", "ß" to "SS", "ﬀ" to "FF"), so `str.upper` can turn text that is not a code, a currency
# or a country into one that is ("uſd" into USD, a header's "ß" into SS, South Sudan).
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def ascii_upper(text: str) -> str:
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def country_or_empty(text: str) -> str:
    """A country code given in any case (a proxy's header), upper-cased; "" if it is not two ASCII letters
    (COUNTRY_PATTERN once upper-cased; checked without the regex: it runs on every redirect that has one)."""
    return text.upper() if len(text) == 2 and text.isascii() and text.isalpha() else ""


def is_host(value: object) -> bool:
    return fullmatch(HOST_RE, value)


def is_host_label(value: object) -> bool:
    return fullmatch(HOST_LABEL_RE, value)


# Characters no name, id, title or description we store may hold: C0 and C1 controls (NEL, U+0085, ends a
# line for `str.splitlines`), DEL and the Unicode line separators (they would break a CSV line, a log line
# or a header). One class for every such field: a value one entry point takes, another (a path, a form,
# the dashboard) must be able to name.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL_CHARS_RE = re.compile(f"[{CONTROL_CHARS}]")
# Text without those characters, for msgspec's `Meta(pattern=...)` (a search: hence \A and \Z).
PLAIN_TEXT_PATTERN = rf"\A[^{CONTROL_CHARS}]*\Z"
# A merchant's display name (the dashboard, the statements).
MAX_NAME_CHARS = 200
# A product category, as the catalog, the rate tables and search all bound it.
MAX_CATEGORY_CHARS = 64


def is_utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8: not when it holds lone surrogates, which is how Python reads bytes
    that are not UTF-8 in the environment and the arguments (surrogateescape)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def has_control_chars(value: str) -> bool:
    return CONTROL_CHARS_RE.search(value) is not None


def is_code(value: object) -> bool:
    return (
        isinstance(value, str)
        and CODE_MIN_CHARS <= len(value) <= CODE_MAX_CHARS
        and CODE_CHARS.issuperset(value)
    )


def timestamp_s(value: object) -> int | None:
    """The seconds of an ASCII decimal timestamp, or None for anything else."""
    return int(value) if fullmatch(TIMESTAMP_S_RE, value) else None


# A whole number in a query string (`limit`) or a stream field: ASCII digits, and few enough of them that
# int() never meets its 4300-digit limit (which raises ValueError, a 500 or a stuck stream, instead of the
# refusal the caller means to give).
QUERY_INT_RE = re.compile(r"\A[0-9]{1,19}\Z")


def query_int(value: object, low: int, high: int) -> int | None:
    """The integer of a query parameter (or stream field) within low..high, or None for anything else."""
    if not fullmatch(QUERY_INT_RE, value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def content_length(value: object) -> int | None:
    """A Content-Length header's value, or None if it is not ASCII digits."""
    return int(value) if fullmatch(CONTENT_LENGTH_RE, value) else None
