"""catalog.split_body reads a catalog body's products into at most `limit` slots and stops at the first
entry too many: it must give exactly what reading the whole list gives (`list[Raw]`, as it did before)
when the list is within the limit, and refuse (CatalogTooLarge) exactly when it is over."""

from __future__ import annotations

import json
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import catalog


class Whole(msgspec.Struct):
    products: list[msgspec.Raw]


def whole_list(body: bytes) -> list[bytes]:
    """The product list as split_body read it before: every entry decoded as msgspec.Raw."""
    decoded = msgspec.json.decode(body, type=list[msgspec.Raw] | Whole)
    return [bytes(raw) for raw in (decoded.products if isinstance(decoded, Whole) else decoded)]


text = st.text(alphabet=st.sampled_from(list('ab"\\[]{},: \u00e9\u2028')), max_size=8)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(values, max_size=8),
    st.booleans(),
    st.dictionaries(text.filter(lambda k: k != "products"), values, max_size=3),
    st.sampled_from([None, 0, 2]),
    st.integers(1, 6),
)
def test_split_body_reads_the_whole_list_or_refuses_it(products, wrapped, beside, indent, limit) -> None:
    document = {**beside, "products": products} if wrapped else products
    body = (" \n" if indent else "").encode() + json.dumps(document, indent=indent).encode()
    expected = whole_list(body)
    if len(expected) > limit:
        with pytest.raises(catalog.CatalogTooLarge) as refused:
            catalog.split_body(body, limit)
        assert refused.value.code == "too_many_products"
    else:
        assert [bytes(raw) for raw in catalog.split_body(body, limit)] == expected


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b",".join([b"0"] * 4_000_000) + b"]",
        b"[" + b",".join([b"{}"] * 2_700_000) + b"]",
        b'{"products":[' + b",".join([b'""'] * 2_700_000) + b"]}",
        b'{"product\\u0073":[' + b",".join([b"[]"] * 2_700_000) + b"]}",
    ],
)
def test_a_flood_of_tiny_entries_is_refused_at_the_first_one_too_many(body: bytes) -> None:
    """8 MiB of tiny entries: reading them all took 130-200 ms in one C call, the event loop's. Bounded as
    a share of that whole read, timed in the same test (here 0.2 ms against 130-200)."""
    started = time.process_time()
    assert len(whole_list(body)) > catalog.MAX_PRODUCTS_PER_PUT
    whole_s = time.process_time() - started
    started = time.process_time()
    with pytest.raises(catalog.CatalogTooLarge):
        catalog.split_body(body)
    assert time.process_time() - started < whole_s / 20
