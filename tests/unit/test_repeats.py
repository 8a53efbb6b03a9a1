"""core/repeats.py: the first name given twice in a query string, a form's pairs or a JSON document."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.repeats import Unscannable, repeated_json_key, repeated_name, repeated_query_key, shown


@pytest.mark.parametrize(
    ("query", "repeated"),
    [
        (b"", None),
        (b"a=1", None),
        (b"a=1&b=2", None),
        (b"a=1&A=2", None),  # names are case-sensitive, as Starlette reads them
        (b"a=1&a=2", "a"),
        (b"a=1&a=1", "a"),
        (b"a&a", "a"),  # blank values count
        (b"a=&b=1&a=", "a"),
        (b"a=1&%61=2", "a"),  # the same name once percent-decoded
        (b"a%20b=1&a+b=2", "a b"),  # '+' is a space in a query
        (b"b=1&a=1&b=2&a=2", "b"),  # the first one repeated
        # Not UTF-8 once decoded: both read as U+FFFD, as Starlette's query_params reads them, one name
        (b"%ff=1&%FF=2", "\ufffd"),
        (b"%ff=1&%fe=2", "\ufffd"),
        (b"a=1;a=2", None),  # ';' is not a separator (Python 3.10+, Starlette): one pair
        (b"a=1&&a=2", "a"),
    ],
)
def test_repeated_query_key(query: bytes, repeated: str | None) -> None:
    assert repeated_query_key(query) == repeated


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (b"{}", None),
        (b"[]", None),
        (b'"a"', None),
        (b'{"a": 1, "b": {"a": 2}}', None),  # the same key in two objects is fine
        (b'[{"a": 1}, {"a": 2}]', None),
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"a": 1, "a": 1}', "a"),
        (b'{"x": {"y": [1, {"k": 1, "k": 2}]}}', "k"),
        (b'[{"a": 1}, {"b": 1, "b": 2}]', "b"),
        (b'{"\\u0061": 1, "a": 2}', "a"),  # an escape names the same key
        (b'{"a": 1, "A": 2}', None),
        ('{"ä": 1, "ä": 2}'.encode(), "ä"),
    ],
)
def test_repeated_json_key(body: bytes, repeated: str | None) -> None:
    orjson.loads(body)  # each case is a document the first parser takes
    assert repeated_json_key(body) == repeated


def test_a_number_python_will_not_convert_does_not_end_the_scan() -> None:
    """Python refuses integers of over 4,300 digits; msgspec skips a value where it ignores the key. The
    scan returned None at the first, and a catalog product was stored with the second price."""
    huge = b"9" * 5_000
    body = b'{"x": ' + huge + b', "products": [{"price_minor": 1, "price_minor": 2}]}'
    assert repeated_json_key(body) == "price_minor"
    assert repeated_json_key(b'{"x": ' + huge + b', "y": 1.' + huge + b"}") is None


def test_json_deeper_than_the_scan_follows_is_too_deep() -> None:
    body = b"[" * 1020 + b"]" * 1020  # orjson takes up to 1,024 levels
    orjson.loads(body)
    with pytest.raises(Unscannable):
        repeated_json_key(body)


def test_a_long_name_is_shown_cut() -> None:
    assert shown("a") == "'a'"
    assert shown("k" * 10_000) == repr("k" * 64 + "...")


def test_repeated_name_of_pairs() -> None:
    assert repeated_name([]) is None
    assert repeated_name([("a", "1"), ("b", "1")]) is None
    assert repeated_name([("a", "1"), ("b", "1"), ("a", "2")]) == "a"


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@given(st.lists(names, min_size=1, max_size=8, unique=True), st.data())
def test_a_name_given_twice_is_found_however_it_is_encoded(keys: list[str], data) -> None:
    values = data.draw(st.lists(st.text(max_size=5), min_size=len(keys), max_size=len(keys)))
    pairs = list(zip(keys, values, strict=True))
    assert repeated_query_key(urlencode(pairs).encode()) is None
    assert repeated_json_key(json.dumps(dict(pairs)).encode()) is None
    again = data.draw(st.sampled_from(keys))
    at = data.draw(st.integers(0, len(pairs)))
    doubled = [*pairs[:at], (again, "x"), *pairs[at:]]
    assert repeated_query_key(urlencode(doubled).encode()) == again
    body = "{" + ",".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in doubled) + "}"
    assert repeated_json_key(body.encode()) == again
