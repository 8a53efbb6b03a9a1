"""core.errors.json_list: a long answer dumped an item at a time is byte for byte the answer orjson dumps
whole (the links, codes and FX lists build theirs so, in a thread)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from core.errors import json_list

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from(["links", "codes", "versions"]), st.lists(JSON, max_size=8))
def test_json_list_is_the_whole_dump(name: str, items: list) -> None:
    assert json_list(name, iter(items)) == orjson.dumps({name: items})
