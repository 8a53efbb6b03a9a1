"""Catalog search with bounded work per request.

Each merchant's products are indexed at upsert time in one Redis sorted set (`Keys.catalog_index`, all
scores 0, read by lexical range), with entries `a:<term>\\0<sku>` and, for a product with a category,
`c:<category>\\0<term>\\0<sku>`. Terms are the lower-cased words of the title and the SKU, plus the empty
term that lists every product once. A query word is a prefix range of that set, so a search reads at most
MAX_SCANNED_PER_SEARCH index entries and the products they name, and never a whole catalog.

`q` matches products in which every query word starts a word of the title or SKU ("trail sh" finds
"Trail shoe"). Results come by merchant id, then term, then SKU, at most `limit` per page; `next_cursor`
continues where a page stopped (a page may be short when the scan budget ran out first)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from core import validate

MAX_RESULTS = 100  # products in one page
MAX_SCANNED_PER_SEARCH = 1_000  # index entries one request may read
MAX_MERCHANTS_PER_SEARCH = 50  # merchants one request may visit; the cursor goes on from there
MAX_QUERY_CHARS = 100
MAX_QUERY_WORDS = 8
MAX_CURSOR_CHARS = 600  # a cursor holds a merchant id and one index entry (about 300 bytes)
MAX_TERM_CHARS = 32  # a longer word is indexed by its first 32 characters, and found by them
MAX_TERMS_PER_PRODUCT = 24  # words after the 24th distinct one are not indexed: the index stays small

_WORD_RE = re.compile(r"\w+")
_TOP = b"\xff"  # above every byte UTF-8 uses: the end of a prefix range


class BadQuery(ValueError):
    pass


def words(text: str) -> list[str]:
    """Distinct lower-case words in order of appearance."""
    return list(dict.fromkeys(_WORD_RE.findall(text.lower())))


def terms(product) -> list[str]:
    """The indexed terms of a product: SKU words first (always findable), then title words."""
    return _terms(words(product.sku) + words(product.title))


def _terms(all_words: list[str]) -> list[str]:
    return list(dict.fromkeys(w[:MAX_TERM_CHARS] for w in all_words))[:MAX_TERMS_PER_PRODUCT]


def members(product) -> set[bytes]:
    """Every index entry of a product."""
    sku = product.sku.encode()
    entries = set()
    for term in ["", *terms(product)]:
        entries.add(b"a:" + term.encode() + b"\0" + sku)
        if product.category:
            entries.add(b"c:" + product.category.encode() + b"\0" + term.encode() + b"\0" + sku)
    return entries


@dataclass(frozen=True, slots=True)
class Query:
    words: tuple[str, ...] = ()
    category: str = ""
    limit: int = MAX_RESULTS

    def bounds(self, key: str) -> tuple[bytes, bytes]:
        """The lexical range of index entries whose term starts with `key` ('': one entry per product)."""
        head = b"c:" + self.category.encode() + b"\0" if self.category else b"a:"
        if not key:
            return head + b"\0", head + b"\0" + _TOP
        return head + key.encode(), head + key.encode() + _TOP

    def pick_key(self, counts: dict[str, int]) -> str:
        """The word whose range is read (the others filter): the one with fewest index entries, the
        longest on a tie, so of two words where one starts the other, never the shorter."""
        return min(self.words, key=lambda w: (counts.get(w, 0), -len(w), w)) if self.words else ""

    def resume_key(self, entry: bytes) -> str | None:
        """The word a page that stopped at `entry` was reading (see pick_key); None if none fits."""
        if not self.words:
            return ""
        term = entry_term(entry)
        fits = [w for w in self.words if term.startswith(w)]
        return max(fits, key=len) if fits else None

    def matches(self, product, entry: bytes, key: str) -> bool:
        """The product has every query word, and `entry` is its first entry in the range of `key` (so a
        product with several matching words is returned once, whatever the page boundaries)."""
        if not self.words:
            return True
        full = words(product.sku) + words(product.title)
        if len(self.words) > 1 and not all(any(w.startswith(q) for w in full) for q in self.words):
            return False
        first = min((t for t in _terms(full) if t.startswith(key)), default=None)
        return first is not None and entry_term(entry) == first


def entry_term(entry: bytes) -> str:
    parts = entry[2:].split(b"\0")
    return parts[-2].decode(errors="replace") if len(parts) >= 2 else ""


def entry_sku(entry: bytes) -> str:
    return entry.rsplit(b"\0", 1)[1].decode()


def parse_query(q: str, category: str, limit: str) -> Query:
    """Query parameters, each bounded; BadQuery with the reason otherwise."""
    if len(q) > MAX_QUERY_CHARS:
        raise BadQuery(f"q must be at most {MAX_QUERY_CHARS} characters")
    found = words(q)
    if len(found) > MAX_QUERY_WORDS:
        raise BadQuery(f"q must have at most {MAX_QUERY_WORDS} words")
    if len(category) > validate.MAX_CATEGORY_CHARS or validate.has_control_chars(category):
        raise BadQuery(
            f"category must be at most {validate.MAX_CATEGORY_CHARS} characters, no control characters"
        )
    if not limit:
        size = MAX_RESULTS
    else:
        size = validate.query_int(limit, 1, MAX_RESULTS)
        if size is None:
            raise BadQuery(f"limit must be an integer 1-{MAX_RESULTS}")
    return Query(tuple(w[:MAX_TERM_CHARS] for w in found), category, size)


def check_id(value: str, name: str) -> str:
    if not validate.is_id(value):
        raise BadQuery(f"{name} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def encode_cursor(merchant_id: str, entry: bytes) -> str:
    """Where the next page starts: after `entry` of `merchant_id` (b'': at that merchant's start)."""
    return base64.urlsafe_b64encode(merchant_id.encode() + b"\0" + entry).decode()


def decode_cursor(cursor: str) -> tuple[str, bytes]:
    if not cursor:
        return "", b""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadQuery("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
        merchant, sep, entry = raw.partition(b"\0")
        merchant_id = merchant.decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadQuery("cursor is not one this API gave") from None
    if not sep or not validate.is_id(merchant_id):
        raise BadQuery("cursor is not one this API gave")
    return merchant_id, entry
