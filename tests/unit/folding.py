"""Every code point whose Unicode upper case holds an ASCII letter, found by a loop over all of Unicode
rather than listed by hand ("ſ", "ı", "ﬀ", "ß", "ﬅ" and the others): the class of letters that `str.upper`
turns into a code, a currency or a country they are not."""

from __future__ import annotations


def _folds_into_ascii(char: str) -> bool:
    return any(c.isascii() for c in char.upper())


FOLDING = [chr(n) for n in range(0x80, 0x110000) if not 0xD800 <= n <= 0xDFFF and _folds_into_ascii(chr(n))]
