"""Batch sequence numbers carry their click shard (redirector/recorder.py): rising within every shard, the
shard readable back from a spooled number, and unchanged numbering on a single node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.keys import MAX_CLICK_SHARDS
from redirector.recorder import batch_seq, shard_of


@pytest.mark.parametrize(
    ("batch", "shards", "seq", "shard"),
    [
        (1, 1, 1, 0),
        (7, 1, 7, 0),
        (1, 6, MAX_CLICK_SHARDS + 1, 1),
        (6, 6, 6 * MAX_CLICK_SHARDS, 0),
        (13, 6, 13 * MAX_CLICK_SHARDS + 1, 1),
        (5, MAX_CLICK_SHARDS, 5 * MAX_CLICK_SHARDS + 5, 5),
    ],
)
def test_numbers_and_shards(batch: int, shards: int, seq: int, shard: int) -> None:
    assert batch_seq(batch, shards) == seq
    assert shard_of(seq, shards) == shard


@given(shards=st.integers(1, MAX_CLICK_SHARDS), count=st.integers(1, 300))
def test_round_robin_and_rising_within_each_shard(shards: int, count: int) -> None:
    last: dict[int, int] = {}
    for batch in range(1, count + 1):
        seq = batch_seq(batch, shards)
        shard = shard_of(seq, shards)
        assert shard == batch % shards
        assert seq > last.get(shard, 0)
        last[shard] = seq
