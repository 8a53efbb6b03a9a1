"""catalog.refuse_too_many counts a catalog body's products without decoding it: it must refuse exactly the
bodies whose product list (as split_body, msgspec, reads it) is longer than the limit, whatever the
strings, nesting and keys around them hold."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import catalog

# Strings full of what the count looks at: quotes, backslashes, brackets, commas.
tricky_text = st.text(alphabet=st.sampled_from(list('ab"\\[]{},: \u00e9\u2028')), max_size=8)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=12,
)


def entries(body: bytes) -> int:
    """The product list's length as split_body reads it."""
    decoded = msgspec.json.decode(body, type=list[msgspec.Raw] | catalog._Wrapped)
    return len(decoded.products if isinstance(decoded, catalog._Wrapped) else decoded)


def refused(body: bytes, limit: int) -> bool:
    try:
        catalog.refuse_too_many(body, limit)
    except catalog.CatalogTooLarge as exc:
        assert exc.code == "too_many_products"
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(
    st.lists(values, max_size=8),
    st.booleans(),
    st.dictionaries(tricky_text.filter(lambda k: k != "products"), values, max_size=3),
    st.booleans(),
    st.integers(1, 6),
)
def test_refuses_exactly_the_bodies_over_the_limit(products, wrapped, beside, ascii_only, limit) -> None:
    document = {**beside, "products": products} if wrapped else products
    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert refused(body, limit) == (entries(body) > limit)


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (b"[]", 0),
        (b"[7]", 1),
        (b'[{"a":"],,,["}, "\\"", "\\\\", "\\\\\\"[,"]', 4),
        (b'{"products":[1,2,3]}', 3),
        (b'{"product\\u0073":[1,2,3]}', 3),  # the same key, escaped
        (b'{"x":[1,2,3,4,5],"products":[1]}', 1),  # another key's list is not counted
        (b'{"products":[1],"products":[1,2,3]}', 3),  # msgspec reads the last; repeats are refused later
        (b'[[1,2,3],{"k":[4,5,6]},7]', 3),
    ],
)
def test_counts_what_split_body_reads(body: bytes, count: int) -> None:
    assert entries(body) == count and not refused(body, count)
    assert count < 2 or refused(body, count - 1)  # a limit is at least 1


def test_refuses_nesting_past_the_bound() -> None:
    deep = b"[" * (catalog.MAX_BODY_DEPTH + 1) + b"]" * (catalog.MAX_BODY_DEPTH + 1)
    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        catalog.refuse_too_many(deep)
    catalog.refuse_too_many(deep[1:-1])
