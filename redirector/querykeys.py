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
Pure functions: the redirect calls `drop_param` per request (a substring test when the query has no `%`
and no spelling of the name), and the API and the link cache call `strip_from_url` once per link."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

# A key encoded this many times over is still recognised (each round is one more decoding layer).
MAX_DECODE_ROUNDS = 3
# What PHP turns into "_" in a parameter name; '+' is a space once form-decoded.
_TO_UNDERSCORE = str.maketrans(dict.fromkeys([" ", ".", "[", "+", *map(chr, range(0x80, 0xA0))], "_"))
_SEPARATORS = re.compile(r"[&;]")


def _names(key: str) -> tuple[str, str]:
    """The names a server may read for one (decoded) key: the key itself, and the key before `[`."""
    key = unicodedata.normalize("NFKC", key.partition("\x00")[0]).casefold().strip()
    return key.translate(_TO_UNDERSCORE), key.partition("[")[0].rstrip().translate(_TO_UNDERSCORE)


def _target(param: str) -> str:
    """The parameter as `_names` spells it. For a valid parameter (A-Z a-z 0-9 _ . -) this is
    `param.lower().replace(".", "_")`, which the per-request filter in `drop_param` relies on."""
    return _names(param)[0]


def reads_as(pair: str, param: str) -> bool:
    """Whether a server could read the query pair `pair` (one `&`-separated piece) as `param`."""
    target = _target(param)
    text = pair
    for _ in range(MAX_DECODE_ROUNDS + 1):
        for piece in _SEPARATORS.split(text):
            if target in _names(piece.partition("=")[0]):
                return True
        decoded = unquote(text.replace("+", " "), errors="replace")
        if decoded == text:
            return False
        text = decoded
    return False


def drop_param(query: str, param: str) -> str:
    """`query` (printable ASCII) without every pair a server could read as `param` (a valid click
    parameter); the other pairs keep their bytes. The same string when nothing is dropped."""
    if "%" not in query:
        # Without '%' a key is read only through case, '+', '.', '[' (and ';', '=', which stay): if the
        # folded query does not contain the folded name, no key can be it.
        folded = query.lower().replace(".", "_").replace("+", "_").replace("[", "_")
        if param.lower().replace(".", "_") not in folded:
            return query
    kept = []
    dropped = False
    for pair in query.split("&"):
        parts = pair.split(";")
        left = [part for part in parts if not reads_as(part, param)]
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
