"""A name given twice in one request: a query parameter, a form field or a JSON object key.

Parsers disagree on which copy wins (Starlette's query parameters and orjson keep the last, Python's
`dict(parse_qsl(...))` habits the last, many proxies, WAFs and other languages' frameworks the first), so a
request that a check in front of us reads one way would be acted on the other way. Every such request is
refused with 400 instead (`repeated_parameter`, `repeated_field`, `repeated_key`); none of ours needs a
name twice. Pure functions, called where each kind of input is parsed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl

# A name is quoted in an error message up to this many characters (a query key may be kilobytes long).
MAX_SHOWN_CHARS = 64


def shown(name: str) -> str:
    """A name as an error message quotes it."""
    return repr(name if len(name) <= MAX_SHOWN_CHARS else name[:MAX_SHOWN_CHARS] + "...")


def repeated_name(pairs: Iterable[tuple[str, object]]) -> str | None:
    """The first name that comes a second time among (name, value) pairs, or None."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    return None


def repeated_query_key(query_string: bytes) -> str | None:
    """The first parameter given twice in a raw query string, read as Starlette reads `query_params`
    (Latin-1, then percent-decoded: `a=1&%61=2` names `a` twice), or None."""
    if not query_string:
        return None
    return repeated_name(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case stays in C: no Python loop over the keys
        raise _Repeated(repeated_name(pairs) or "")
    return obj


class Unscannable(ValueError):
    """JSON the scan below cannot follow (nested past Python's recursion limit, about 1,000 levels), or
    that Python's parser reads otherwise than the first parser did: refused, never let through unscanned."""


def repeated_json_key(body: bytes | str) -> str | None:
    """The first object key given twice at any depth of a JSON document, or None. The document must
    already have parsed (orjson or msgspec): this second pass only looks for what those parsers hide by
    keeping the last copy. Numbers are not converted (a 5,000-digit integer, which Python refuses to
    convert and msgspec skips where it ignores a value, must not end the scan). Raises Unscannable."""
    try:
        json.loads(
            body, object_pairs_hook=_refuse_repeats, parse_int=len, parse_float=len, parse_constant=len
        )
    except _Repeated as exc:
        return exc.key
    except RecursionError:
        raise Unscannable("JSON nested too deeply") from None
    except ValueError as exc:
        raise Unscannable(f"JSON that cannot be scanned: {exc}") from None
    return None
