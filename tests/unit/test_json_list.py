"""core.errors.json_list: a long answer dumped an item at a time is byte for byte the answer orjson dumps
whole (the links, codes and FX lists build theirs so, in a thread)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from core.errors import JSON_CHUNK_BYTES, json_list

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from(["links", "codes", "versions"]), st.lists(JSON, max_size=8))
def test_json_list_is_the_whole_dump(name: str, items: list) -> None:
    assert b"".join(json_list(name, iter(items))) == orjson.dumps({name: items})


def test_a_long_list_comes_in_pieces_none_much_past_the_chunk_size() -> None:
    """No piece is the whole answer: a join or a dump of 241 MB (10,000 codes of 200 assignments) is one C
    call that held the event loop 0.3 s (an adversarial pass)."""
    item = {"code": "x" * 1000, "spans": list(range(50))}
    items = [item] * 5_000
    chunks = json_list("codes", iter(items))
    assert b"".join(chunks) == orjson.dumps({"codes": items})
    largest = len(orjson.dumps(item)) + 1
    assert len(chunks) > 4 and all(len(c) <= JSON_CHUNK_BYTES + largest + 16 for c in chunks)
