"""Which query keys a merchant's server reads as the click parameter, and taking them out.

A viewer must not be able to hand the merchant a click id of their choosing next to ours. Servers do not
compare query keys byte for byte, so neither do we. A pair is taken to carry the parameter when any of
these readings of its key gives the parameter's name:

- percent-decoding, hex digits in either case, `+` as a space; and again, up to `MAX_DECODE_ROUNDS`
  times (a proxy that decodes before the application does), splitting on a decoded `&` or `;`;
- `;` as a pair separator as well as `&` (older CGI and Java stacks);
- case-insensitive and compatibility-normalised names (ASP.NET, Java's `equalsIgnoreCase`: `CT_CLICK`,
  a Kelvin sign for `k`, full-width letters);
- PHP's names: a space, `.`, `[` or a C1 control becomes `_`, leading and trailing blanks are dropped,
  and `name[...]` is an array under `name`;
- a NUL ends the name (C strings).

Being generous costs at most a viewer's odd parameter; the other pairs keep their bytes as they came.
Pure functions: the redirect calls `drop_param` per request (a lower-cased substring test when the
query has no `%` and no spelling of the name), and the API and the link cache call `strip_from_url` once
per link."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

# A key encoded this many times over is still recognised (each round is one more decoding layer).
MAX_DECODE_ROUNDS = 3
# What PHP turns into "_" in a parameter name; '+' is a space once form-decoded.
_TO_UNDERSCORE = re.compile(r"[ .\[+\x80-\x9f]")
_SEPARATORS = re.compile(r"[&;]")


def _fold(text: str) -> str:
    """`text` as `_names` folds a name (compatibility form, case-folded, PHP's underscores). For any key
    inside `text`, the key's names are substrings of this: a cheap test that no key can be the parameter."""
    if text.isascii():  # the usual case: no normalisation to do
        return text.lower().replace(".", "_").replace("+", "_").replace("[", "_").replace(" ", "_")
    return _TO_UNDERSCORE.sub("_", unicodedata.normalize("NFKC", text).casefold())


def _names(key: str) -> tuple[str, str]:
    """The names a server may read for one (decoded) key: the key itself, and the key before `[`."""
    key = unicodedata.normalize("NFKC", key.partition("\x00")[0]).casefold().strip()
    return _TO_UNDERSCORE.sub("_", key), _TO_UNDERSCORE.sub("_", key.partition("[")[0].rstrip())


def _readings(text: str) -> Iterator[str]:
    """`text` as it stands after each decoding round: as sent, then form-decoded once, twice, ..."""
    yield text
    for _ in range(MAX_DECODE_ROUNDS):
        if "%" not in text and "+" not in text:
            return
        decoded = unquote(text.replace("+", " "), errors="replace")
        if decoded == text:
            return
        text = decoded
        yield text


def _target(param: str) -> str:
    """A valid parameter (A-Z a-z 0-9 _ . -) as `_names` spells it."""
    return param.lower().replace(".", "_")


def _reads_as(pair: str, target: str) -> bool:
    for text in _readings(pair):
        if target in _fold(text):
            for piece in _SEPARATORS.split(text):
                if target in _names(piece.partition("=")[0]):
                    return True
    return False


def reads_as(pair: str, param: str) -> bool:
    """Whether a server could read the query pair `pair` (one `&`-separated piece) as `param` (a valid
    click parameter)."""
    return _reads_as(pair, _target(param))


def drop_param(query: str, param: str) -> str:
    """`query` (printable ASCII) without every pair a server could read as `param` (a valid click
    parameter); the other pairs keep their bytes. The same string when nothing is dropped."""
    target = _target(param)
    if "%" not in query and "+" not in query:
        # The common case: one decoding round only, and a lower-cased substring test settles it.
        if target not in query.lower().replace(".", "_").replace("[", "_"):
            return query
    elif not any(target in _fold(text) for text in _readings(query)):
        return query
    kept = []
    dropped = False
    for pair in query.split("&"):
        parts = pair.split(";")
        left = [part for part in parts if not _reads_as(part, target)]
        if len(left) == len(parts):
            kept.append(pair)
            continue
        dropped = True
        if left:
            kept.append(";".join(left))
    return "&".join(kept) if dropped else query


def strip_from_url(url: str, param: str) -> str:
    """A destination URL without any query pair a server could read as `param` (the fragment stays)."""
    base, hash_sign, fragment = url.partition("#")
    path, question, query = base.partition("?")
    if not question:
        return url
    cleaned = drop_param(query, param)
    if cleaned == query:
        return url
    return path + ("?" + cleaned if cleaned else "") + hash_sign + fragment
