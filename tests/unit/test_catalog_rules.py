"""Catalog bounds, search index and query rules, rate-map bounds and webhook secret rotation, table-driven:
every field and list a catalog, rates or search request can carry has a bound, and each is tested at and
past its edge."""

from __future__ import annotations

import msgspec
import pytest

from attribution import catalog, search
from attribution.catalog import CatalogTooLarge, Product, check_product, split_body
from attribution.merchants import MAX_ACTIVE_SECRETS, rotation, select_active
from attribution.rates import RatesUpdate, check_update
from core import validate

GOOD = Product("SKU-1", "Trail shoe", "https://shop.example.com/p/1", 5990, "EUR", "shoes", 1500)


def _with(**changes) -> Product:
    return msgspec.structs.replace(GOOD, **changes)


@pytest.mark.parametrize(
    "product",
    [
        GOOD,
        _with(sku="s" * catalog.MAX_SKU_CHARS),
        _with(title="t" * catalog.MAX_TITLE_CHARS),
        _with(title=""),
        _with(category="c" * catalog.MAX_CATEGORY_CHARS),
        _with(url="http://shop.example.com"),
        _with(url="https://shop.example.com/" + "a" * (catalog.MAX_PRODUCT_URL_BYTES - 25)),
        _with(url="https://bücher.example/p?x=1#f"),
        _with(price_minor=0),
        _with(price_minor=catalog.MAX_PRICE_MINOR),
        _with(rate_bps=None),
        _with(rate_bps=0),
        _with(rate_bps=10_000),
        _with(currency="JPY"),
        _with(currency="BHD"),
    ],
)
def test_products_within_bounds_pass(product: Product) -> None:
    check_product(product)


@pytest.mark.parametrize(
    ("product", "reason"),
    [
        (_with(sku=""), "sku"),
        (_with(sku="s" * (catalog.MAX_SKU_CHARS + 1)), "sku"),
        (_with(sku="SKU\n"), "sku"),
        (_with(sku="SKU\x00x"), "sku"),
        (_with(sku=" SKU"), "sku"),
        (_with(title="t" * (catalog.MAX_TITLE_CHARS + 1)), "title"),
        (_with(title="a\nb"), "title"),
        (_with(title="a\u2028b"), "title"),
        (_with(category="c" * (catalog.MAX_CATEGORY_CHARS + 1)), "category"),
        (_with(category="shoes\t"), "category"),
        (_with(url="ftp://shop.example.com/"), "url"),
        (_with(url="https://"), "url"),
        (_with(url="https://shop.example.com/a b"), "url"),
        (_with(url="https://shop.example.com/\r\nx"), "url"),
        (_with(url="https://user@shop.example.com/"), "url"),
        (_with(url="javascript:alert(1)"), "url"),
        (_with(url="https://shop.example.com/" + "a" * catalog.MAX_PRODUCT_URL_BYTES), "url"),
        (_with(price_minor=-1), "price_minor"),
        (_with(price_minor=catalog.MAX_PRICE_MINOR + 1), "price_minor"),
        (_with(currency="eur"), "currency"),
        (_with(currency="EURO"), "currency"),
        (_with(currency="EUR\n"), "currency"),
        # Three capitals are not enough: only ISO 4217 codes money can be booked in (found by fuzzing).
        (_with(currency="AAA"), "currency"),
        (_with(currency="XTS"), "currency"),
        (_with(currency="XAU"), "currency"),
        (_with(currency="XDR"), "currency"),
        (_with(rate_bps=-1), "rate_bps"),
        (_with(rate_bps=10_001), "rate_bps"),
    ],
)
def test_products_past_a_bound_are_refused(product: Product, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_product(product)


def _body(count: int, wrapped: bool = False) -> bytes:
    items = [msgspec.structs.replace(GOOD, sku=f"S{i}") for i in range(count)]
    return msgspec.json.encode({"products": items} if wrapped else items)


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize(
    ("count", "refused"),
    [(0, False), (1, False), (catalog.MAX_PRODUCTS_PER_PUT, False), (catalog.MAX_PRODUCTS_PER_PUT + 1, True)],
)
def test_products_per_put_are_bounded(count: int, refused: bool, wrapped: bool) -> None:
    body = _body(count, wrapped)
    if refused:
        with pytest.raises(CatalogTooLarge) as caught:
            split_body(body)
        assert caught.value.code == "too_many_products"
    else:
        assert len(split_body(body)) == count


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'[{"sku": ', msgspec.DecodeError),
        (b"", msgspec.DecodeError),
        (b'{"items": []}', msgspec.ValidationError),
        (b"5", msgspec.ValidationError),
        (b'"x"', msgspec.ValidationError),
        (b'{"products": 5}', msgspec.ValidationError),
        (b"{}", msgspec.ValidationError),
        (b"[1, 2", msgspec.DecodeError),
        (b"[" * 5_000 + b"]" * 5_000, msgspec.DecodeError),
    ],
)
def test_catalog_bodies_of_the_wrong_shape_are_refused(body: bytes, error: type) -> None:
    with pytest.raises(error):
        split_body(body)


# --- search index --------------------------------------------------------------------------------


def test_index_entries_name_every_word_once_per_scope() -> None:
    product = _with(sku="SKU-9", title="Trail trail Shoe", category="shoes")
    assert search.terms(product) == ["sku", "9", "trail", "shoe"]
    entries = search.members(product)
    assert b"a:\x00SKU-9" in entries and b"c:shoes\x00\x00SKU-9" in entries  # the listing entries
    assert b"a:trail\x00SKU-9" in entries and b"c:shoes\x00trail\x00SKU-9" in entries
    assert len(entries) == 2 * (1 + 4)


def test_index_is_bounded_per_product() -> None:
    title = " ".join(f"w{i}" + "x" * 60 for i in range(100))
    product = _with(title=title[: catalog.MAX_TITLE_CHARS], category="")
    assert len(search.terms(product)) <= search.MAX_TERMS_PER_PRODUCT
    assert all(len(t) <= search.MAX_TERM_CHARS for t in search.terms(product))
    assert len(search.members(product)) <= search.MAX_TERMS_PER_PRODUCT + 1


@pytest.mark.parametrize(
    ("q", "title", "entry_term", "expected"),
    [
        ("trail", "Trail shoe", "trail", True),
        ("tra", "Trail trainer", "trail", True),  # first matching term: returned here...
        ("tra", "Trail trainer", "trainer", False),  # ...and not again at its second term
        ("shoe", "Trail shoe", "shoe", True),
        ("trail shoe", "Trail shoe", "shoe", False),  # "trail" and "shoe": "shoe" is not the longest
        ("trail shoe", "Trail shoe", "trail", True),
        ("trail boot", "Trail shoe", "trail", False),  # every query word must start a word
        ("ail", "Trail shoe", "trail", False),  # prefixes of words, not substrings
        ("sku", "Trail shoe", "sku", True),  # the SKU's words are searchable
    ],
)
def test_query_matching(q: str, title: str, entry_term: str, expected: bool) -> None:
    query = search.parse_query(q, "", "")
    product = _with(title=title)
    key = query.pick_key({})  # equal counts: the longest word
    entry = b"a:" + entry_term.encode() + b"\x00" + product.sku.encode()
    assert query.matches(product, entry, key) is expected


@pytest.mark.parametrize(
    ("q", "category", "limit", "reason"),
    [
        ("x" * (search.MAX_QUERY_CHARS + 1), "", "", "q must"),
        (" ".join(f"w{i}" for i in range(search.MAX_QUERY_WORDS + 1)), "", "", "words"),
        ("", "c" * (validate.MAX_CATEGORY_CHARS + 1), "", "category"),
        ("", "shoes\n", "", "category"),
        ("", "", "0", "limit"),
        ("", "", str(search.MAX_RESULTS + 1), "limit"),
        ("", "", "-1", "limit"),
        ("", "", "ten", "limit"),
        ("", "", "\u0665", "limit"),  # an Arabic-Indic digit: isdigit() but not a limit
        ("", "", "1" * 5000, "limit"),  # past int()'s 4300 digits: ValueError, not a refusal
        ("", "", "0" * 4400 + "5", "limit"),
    ],
)
def test_query_parameters_past_a_bound_are_refused(q: str, category: str, limit: str, reason: str) -> None:
    with pytest.raises(search.BadQuery, match=reason):
        search.parse_query(q, category, limit)


def test_query_parameters_within_bounds() -> None:
    query = search.parse_query("Trail  SHOE", "shoes", str(search.MAX_RESULTS))
    assert query.words == ("trail", "shoe") and query.limit == search.MAX_RESULTS
    assert query.bounds("trail") == (b"c:shoes\x00trail", b"c:shoes\x00trail\xff")
    assert search.parse_query("", "", "").bounds("") == (b"a:\x00", b"a:\x00\xff")


@pytest.mark.parametrize(
    ("q", "counts", "key"),
    [
        ("model 123", {"model": 5000, "123": 11}, "123"),  # the rarer word is read
        ("model 123", {}, "model"),  # a tie: the longer
        ("tr trail", {"tr": 40, "trail": 40}, "trail"),
        ("tr trail", {"tr": 3, "trail": 3}, "trail"),
        ("shoe", {"shoe": 9}, "shoe"),
        ("", {}, ""),
    ],
)
def test_the_rarest_query_word_is_read(q: str, counts: dict, key: str) -> None:
    query = search.parse_query(q, "", "")
    assert query.pick_key(counts) == key
    if key:  # a page that stopped inside that word's range goes on reading it
        assert query.resume_key(b"a:" + key.encode() + b"zz\x00SKU") == key


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "x" * (search.MAX_CURSOR_CHARS + 1),
        search.encode_cursor("bad id", b"a:x"),
        "bm9udWxs",  # base64 of "nonull": no separator
        "é",
    ],
)
def test_cursors_we_did_not_give_are_refused(cursor: str) -> None:
    with pytest.raises(search.BadQuery):
        search.decode_cursor(cursor)


def test_cursor_round_trip() -> None:
    entry = b"c:shoes\x00trail\x00SKU \xc3\xa9"
    assert search.decode_cursor(search.encode_cursor("brand_1", entry)) == ("brand_1", entry)
    assert search.decode_cursor("") == ("", b"")


# --- rate maps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (RatesUpdate(10_001), "default_rate_bps"),
        (RatesUpdate(800, categories={f"c{i}": 1 for i in range(1_001)}), "category rates"),
        (RatesUpdate(800, creators={f"c{i}": 1 for i in range(1_001)}), "creator rates"),
        (RatesUpdate(800, categories={"": 100}), "category"),
        (RatesUpdate(800, categories={"c" * 65: 100}), "category"),
        (RatesUpdate(800, categories={"shoes\n": 100}), "category"),
        (RatesUpdate(800, categories={"shoes": 10_001}), "shoes"),
        (RatesUpdate(800, creators={"alice\n": 100}), "creator"),
        (RatesUpdate(800, creators={"a b": 100}), "creator"),
        (RatesUpdate(800, creators={"a" * 65: 100}), "creator"),
        (RatesUpdate(800, creators={"alice": -1}), "alice"),
    ],
)
def test_rate_updates_past_a_bound_are_refused(update: RatesUpdate, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_update(update)


def test_rate_updates_at_their_bounds_pass() -> None:
    check_update(
        RatesUpdate(
            10_000,
            categories={f"c{i}": 0 for i in range(999)} | {"c" * 64: 10_000},
            creators={f"creator{i}": 10_000 for i in range(999)} | {"a" * 64: 0},
        )
    )


# --- webhook secrets -----------------------------------------------------------------------------

NOW = 1_000_000
GRACE = 100


@pytest.mark.parametrize(
    ("current", "expected_after", "previous_expiry"),
    [
        ({}, {"new": 0}, 0),  # the first secret
        ({"a": 0}, {"new": 0, "a": NOW + GRACE}, NOW + GRACE),  # a rotation: a verifies for the grace
        ({"a": NOW + 50, "b": 0}, {"new": 0, "b": NOW + GRACE}, NOW + GRACE),  # a retired at once
        ({"a": NOW + 10, "b": NOW + 20, "c": 0}, {"new": 0, "c": NOW + GRACE}, NOW + GRACE),
        ({"a": NOW - 1, "b": 0}, {"new": 0, "b": NOW + GRACE}, NOW + GRACE),  # expired: pruned
        ({"a": NOW + 50}, {"new": 0, "a": NOW + 50}, NOW + 50),  # never extended
        ({"a": NOW - 1}, {"new": 0}, 0),
    ],
)
def test_rotation_keeps_at_most_two_secrets(
    current: dict, expected_after: dict, previous_expiry: int
) -> None:
    updates, deleted, expiry = rotation(current, "new", NOW, GRACE)
    after = {**current, **updates}
    for secret in deleted:
        del after[secret]
    assert after == expected_after
    assert expiry == previous_expiry
    assert len(select_active(after, NOW)) <= MAX_ACTIVE_SECRETS


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"a": 0}, ["a"]),
        ({"a": NOW + 5, "b": 0}, ["b", "a"]),
        ({"a": NOW + 5, "b": NOW + 9, "c": 0, "d": NOW + 1}, ["c", "b"]),  # stored before the cap
        ({"a": NOW, "b": 0}, ["b"]),  # expiring now: no longer verifies
        ({"a": NOW + 5, "b": NOW + 9}, ["b", "a"]),
        ({}, []),
    ],
)
def test_at_most_two_secrets_verify(stored: dict, expected: list[str]) -> None:
    assert select_active(stored, NOW) == expected


@pytest.mark.parametrize(
    ("price_minor", "per_unit"),
    [
        (10_000, 800),
        (catalog.MAX_PRICE_MINOR, catalog.MAX_PRICE_MINOR * 8 // 100),
        (10**15, None),
        (2**63, None),
    ],
)
def test_search_never_computes_past_a_bound(price_minor: int, per_unit: int | None) -> None:
    """A product stored before prices were bounded is still listed, with no per-unit figure, never a 500."""
    from attribution.rules import RateVersion

    stored = Product(sku="S", title="t", url="https://s.example/p", price_minor=price_minor, currency="EUR")
    view = catalog.product_view("m1", stored, RateVersion(1, 0, 800), "c1")
    assert view["earn_per_unit_minor"] == per_unit
